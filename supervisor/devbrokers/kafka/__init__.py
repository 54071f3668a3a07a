"""Data files for the dev broker (pom.xml, log4j2.properties); a package so setuptools ships it."""
