"""dms-access: the DMS Access Portal's command-line client.

It talks to the portal only through its REST API (/api/v1/), so it runs
anywhere Python does, with no Django and none of the portal's code.
"""
__version__ = "0.1.0"
