"""The Faust "Agents" guide's examples, running on agentlib (``import agentlib as faust``).

A package so that records get the guide's namespaces (``examples.agent.Add``) and the
modules import each other the way the guide shows (``from examples.agent import ...``).
"""
