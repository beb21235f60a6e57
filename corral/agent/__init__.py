"""Corral's in-sandbox agent: a stdlib-only Python >= 3.8 package.

On the host it is `corral.agent` (the host imports only `corral.agent.bundle`); inside a sandbox
the bundle unpacks it as the top-level package `corral_agent` and runs `python3 -I -c <launcher>`,
so every module here uses relative imports and nothing from the rest of Corral.
Protocol, modes and layout: docs/agent-protocol.md. Module map:

    bundle      the shipped zip, its version digest, the bootstrap and launch command lines
    __main__    entry point: relay | daemon | serve-stdio | tcp-relay | proc-waiter | fs-scan | version
    relay       relay and tcp-relay modes, starting the daemon
    daemon      daemon and serve-stdio modes (loads every ops_* module)
    wire        framing and byte streams          rpc      connections, requests, the op registry
    errors      Failure and the errno table       params   request field validation
    util        logging, dirs, threads, files     spawn    child processes
    capture     output capture and progress       state    what all connections share
    ops_*       one family of ops each: agent (hello, shutdown), exec, files, fs, procs,
                signal, code (interpreter contexts)
    procs       background process spools and the proc-waiter
    contexts    interpreter contexts              driver   one interpreter driver process
    fsscan      search/find, run in a child process (fs-scan)
    inbox       payloads the host staged in the agent volume instead of sending them inline
"""
