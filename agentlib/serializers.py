"""Faust's module path for codecs: ``from agentlib.serializers import codecs``.

Faust code registers user codecs with ``from faust.serializers import codecs``;
this keeps that import working with ``faust`` replaced by ``agentlib``.
"""

from agentlib import codecs

__all__ = ["codecs"]
