"""The hub: the interpreter that carries out the cores' decisions, and the session bookkeeping around it."""
