"""``sesame-voice``: one console command, a subcommand per process or tool.

Each subcommand's module owns its flags and config; this file only dispatches, with lazy imports so
``sesame-voice --help`` does not load torch.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "up": ("sesame_voice.up", "run the whole service, supervised: broker, worker(s), gateway"),
    "reload": ("sesame_voice.reload", "replace a running up's processes, each new one ready first (SIGHUP)"),
    "tiers": ("sesame_voice.tiers", "switch a running gateway's tiers: prefer, disable, enable, reset"),
    "gateway": ("stream_server.main", "run the websocket + HTTP gateway"),
    "worker": ("synth_worker.main", "run a synthesis worker"),
    "build-dev-model": ("synth_worker.devmodel", "write a small random-weight Bark checkpoint to DIR"),
    "loadtest": ("clients.loadtest", "open-loop load test against a running gateway"),
    "replay": ("clients.replay", "replay a JSONL trace of streamed text and measure latency"),
    "say": ("clients.say", "speak text (an argument, or stdin as it arrives) to a file or the speakers"),
}


def usage() -> str:
    lines = ["usage: sesame-voice COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<16} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"sesame-voice: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
