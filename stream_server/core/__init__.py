"""Pure cores of the gateway: plain classes fed events (``now`` passed in), handing back actions."""
