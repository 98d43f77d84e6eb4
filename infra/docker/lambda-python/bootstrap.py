"""/var/runtime/bootstrap.py: the managed runtime's start, as in AWS's python3.13 image.

It puts the function's code and the layers on sys.path (the order Lambda documents for python3.13),
then hands over to awslambdaric, which serves the handler over the Runtime API.
"""

import os
import sys


def main() -> None:
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    sys.path[0:0] = [task_root, "/opt/python/lib/python3.13/site-packages", "/opt/python"]
    handler = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else os.environ.get("_HANDLER", "")
    from awslambdaric.__main__ import main as ric_main  # type: ignore[import-not-found]  # in the image

    ric_main([sys.argv[0], handler])


if __name__ == "__main__":
    main()
