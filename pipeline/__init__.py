"""customs-targeting: learn which customs declarations to control.

Importing this package has no side effects: no folders, no tracking URI, no logging setup.
"""

__version__ = "0.1.0"
