"""A minimal stand-in for the python driver, so the daemon's side of the driver interface is
tested deterministically: fd 3 carries {"id", "code"} lines, fd 4 gets the replies; a run's
`OUTPUTS` global, if it sets one, is sent as the reply's outputs.

It runs code notebook-style in persistent globals. SIGINT raises KeyboardInterrupt only while a run
is in progress; code can make the driver unresponsive with signal.signal(SIGINT, SIG_IGN).
"""

import ast
import json
import os
import signal
import sys
import traceback

running = False


def on_sigint(signum, frame):
    if running:
        raise KeyboardInterrupt


def execute(code, namespace):
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<code>", "exec"), namespace)
    if last is None:
        return None
    value = eval(compile(ast.Expression(last.value), "<code>", "eval"), namespace)
    return None if value is None else repr(value)


def main():
    global running
    signal.signal(signal.SIGINT, on_sigint)
    control = os.fdopen(3, "r")
    replies = os.fdopen(4, "w")
    replies.write(json.dumps({"ready": True, "pid": os.getpid(), "language": "python"}) + "\n")
    replies.flush()
    namespace = {"__name__": "__main__"}
    for line in control:
        request = json.loads(line)
        reply = {"id": request["id"], "value": None, "outputs": [], "error": None}
        running = True
        try:
            reply["value"] = execute(request["code"], namespace)
        except KeyboardInterrupt:
            reply["error"] = {"ename": "KeyboardInterrupt", "evalue": "", "traceback": ""}
        except BaseException as exc:
            reply["error"] = {
                "ename": type(exc).__name__,
                "evalue": str(exc),
                "traceback": traceback.format_exc(),
            }
        finally:
            running = False
        # A run can hand the daemon any outputs it likes (to test how the daemon cleans them).
        reply["outputs"] = namespace.pop("OUTPUTS", [])
        sys.stdout.flush()
        sys.stderr.flush()
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
