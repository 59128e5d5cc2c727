"""A user's mistake as one line (`error: ... Fix: ...`), a bug as its traceback: every command (the CLI, the page,
export, the studies) exits through `exit_on_user_error`."""

from __future__ import annotations

import errno
import os
import sys
import threading

from lightning.fabric.utilities.exceptions import MisconfigurationException

from fashion_lab.errors import ClassCountError, ConfigError, DataError, NonFiniteLossError

# Mistakes in a config, a data file, a folder or a checkpoint: one line, not a traceback (FASHION_LAB_DEBUG=1 shows it).
# Only the package's own error types, Lightning's configuration errors and file-system errors that name a path; a bug
# keeps its traceback.
USER_ERRORS = (DataError, ConfigError, NonFiniteLossError, MisconfigurationException, OSError)
DEBUG_HINT = "(set FASHION_LAB_DEBUG=1 to see the traceback)"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def quiet_disk_full_in_threads() -> None:
    """A full disk met by a writer thread (TensorBoard writes its event files from one) prints no traceback: the
    main thread meets the same error at its next flush and reports it as one line. Idempotent: each `cli_main` in a
    process calls it, and the hook wraps the previous one once."""
    if getattr(threading.excepthook, "quiet_disk_full", False):
        return
    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (isinstance(args.exc_value, OSError) and args.exc_value.errno in DISK_FULL):
            default(args)

    hook.quiet_disk_full = True
    threading.excepthook = hook


def user_error_message(e: BaseException) -> str | None:
    """The one line a user's mistake behind `e` deserves, or None when `e` is a bug (it keeps its traceback)."""
    user_error = _user_error(e)
    return None if user_error is None else _message(user_error)


def exit_on_user_error(e: BaseException) -> None:
    """For a user's mistake: print its one `error:` line and exit 1. For a bug (or FASHION_LAB_DEBUG=1): return, and
    the caller re-raises it with its traceback."""
    user_error = _user_error(e)
    if user_error is None or os.environ.get("FASHION_LAB_DEBUG"):
        return
    hint = f"\n{DEBUG_HINT}" if traceback_helps(user_error) else ""
    print(f"error: {_message(user_error)}{hint}", file=sys.stderr)
    sys.exit(1)


def traceback_helps(e: BaseException) -> bool:
    """Whether the debug hint belongs under this error's line: not under a message that names the option or file, the
    value and the fix (the package's ConfigError always does, Lightning's refusals name their option, a DataError or
    loss error when it says "Fix:"), but under a file-system error, where the traceback shows which step met it."""
    if isinstance(e, ConfigError | MisconfigurationException):
        return False
    return not (isinstance(e, DataError | NonFiniteLossError) and " Fix: " in str(e))


def _user_error(e: BaseException) -> BaseException | None:
    """The package's own error behind `e` (jsonargparse wraps a constructor's error in "Does not validate ..."),
    Lightning's configuration error, or a file-system error that names a path; None for anything else, which is a
    bug and keeps its traceback."""
    while e is not None:
        if isinstance(e, USER_ERRORS) and not (
            isinstance(e, OSError) and not isinstance(e, DataError) and not e.filename
        ):
            return e
        e = e.__cause__
    return None


def lightning_refused(e: BaseException) -> str:
    """One line for a configuration that Lightning itself refused: its words, and where to change the option."""
    return (
        f"Lightning refused the configuration: {' '.join(str(e).split())} "
        "Fix: change the option it names (`fashion-lab fit --help` lists every option)."
    )


def _class_count(e: ClassCountError) -> str:
    """The CLI's words: its model takes `num_classes` from the data (`data.num_classes` → `model.num_classes`)."""
    if e.source == "checkpoint":
        return (
            f"the checkpoint was trained for {e.other} classes, but this model (linked from the data) has "
            f"{e.model}. Fix: use the data module the checkpoint was trained on "
            "(its run's config.yaml; for picture files, --data.classes with its data set's name), "
            "or train a new model on this data."
        )
    return (
        f"the model has {e.model} classes, but the data has {e.other}. Fix: leave model.num_classes to the link "
        "from data.num_classes (do not set it in a config)."
    )


def _message(e: BaseException) -> str:
    if isinstance(e, ClassCountError):
        return _class_count(e)
    if isinstance(e, MisconfigurationException):
        return lightning_refused(e)
    if isinstance(e, OSError) and e.filename and not isinstance(e, DataError):
        if e.errno in DISK_FULL:
            fix = "free space there (or lift the file-size limit), then resume with --ckpt_path last"
        else:
            fix = (
                "choose a folder that you can create and write to (e.g. --trainer.logger.init_args.save_dir for "
                "a run), and check that no file stands in its path"
            )
        return f"{e.strerror}: {e.filename}. Fix: {fix}."
    return str(e)
