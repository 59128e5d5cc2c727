"""The command line (LightningCLI): `python -m fashion_lab.cli fit|validate|test|predict`, or `fashion-lab ...`.

python -m fashion_lab.cli fit                                    # the seed: Fashion-MNIST, 5 epochs, then test
python -m fashion_lab.cli fit --config configs/k49.yaml          # the seed's homework: Kuzushiji-49
python -m fashion_lab.cli fit --model.loss mse --data.val_split 0.1
python -m fashion_lab.cli predict --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt
python -m fashion_lab.cli test --ckpt_path last                  # the newest run's checkpoint, with its data
tensorboard --logdir lightning_logs

lightning_cli: the LightningCLI subclass, `cli_main` and `make_cli`; signals: stopping on SIGINT/SIGTERM;
checkpoints: the run a checkpoint belongs to, the data it names, cleaning up; user_errors: a mistake as one
`error: ... Fix: ...` line.
"""

from fashion_lab.checkpoints import CheckpointError, read_checkpoint
from fashion_lab.cli.lightning_cli import DESCRIPTION, FashionLabCLI, cli_main, make_cli, trainer_defaults
from fashion_lab.cli.signals import EXIT_STATUS, Stopped, StopSignals, command_line, exit_status
from fashion_lab.cli.user_errors import user_error_message

__all__ = [
    "DESCRIPTION",
    "EXIT_STATUS",
    "CheckpointError",
    "FashionLabCLI",
    "StopSignals",
    "Stopped",
    "cli_main",
    "command_line",
    "exit_status",
    "make_cli",
    "read_checkpoint",
    "trainer_defaults",
    "user_error_message",
]
