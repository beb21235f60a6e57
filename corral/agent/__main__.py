"""Entry point: `<python> -I -c <bundle.LAUNCHER> <import root> <package> MODE [ARGS]`.

(`python -m corral.agent MODE` works too wherever the package is importable.) Each mode imports
only what it needs, so the relay and the proc-waiter start quickly.
"""

from __future__ import annotations

import sys

USAGE = (
    "usage: <agent> [relay | daemon | serve-stdio | tcp-relay HOST PORT | proc-waiter DIR | fs-scan | version]"
)


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "relay"
    if mode == "relay" and len(argv) <= 1:
        from .relay import relay_main

        return relay_main()
    if mode == "daemon" and len(argv) == 1:
        from .daemon import daemon_main

        return daemon_main()
    if mode == "serve-stdio" and len(argv) == 1:
        from .daemon import serve_stdio_main

        return serve_stdio_main()
    if mode == "tcp-relay" and len(argv) == 3:
        from .relay import tcp_relay_main

        return tcp_relay_main(argv[1], argv[2])
    if mode == "proc-waiter" and len(argv) == 2:
        from .procs import proc_waiter_main

        return proc_waiter_main(argv[1])
    if mode == "fs-scan" and len(argv) == 1:
        from .fsscan import fs_scan_main

        return fs_scan_main()
    if mode == "version" and len(argv) == 1:
        from .bundle import agent_version

        print(agent_version())
        return 0
    from .util import log

    log(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
