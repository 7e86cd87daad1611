"""The composition root: the ``sesame-voice`` console command and the process supervisor.

It is the one package that may import every other one (servers and clients alike); the servers
(``broker``, ``synth_worker``, ``stream_server``) never import ``clients`` or this package.
"""
