"""The gateway's HTTP and websocket adapters: the app factory, its routes, auth, the listening socket."""
