"""Fit the shared problem with checkpoints, then hang at a logging boundary until killed.

Usage: ``python -m tests.train_scripts.fit_until_killed MODE CHECKPOINT_DIR MARKER``. At step
``problem.HANG_AT`` a callback writes MARKER and sleeps forever: the checkpoint of the previous
boundary is on disk, training is not finished, and the parent test kills the process with SIGKILL.
"""

import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

from jaxla import train  # noqa: E402
from tests.train_scripts import problem  # noqa: E402


def main(mode: str, checkpoint_dir: str, marker: str) -> None:
    def hang(info):
        if info.step >= problem.HANG_AT:
            with open(marker, "w") as f:
                f.write(str(info.step))
            while True:
                time.sleep(1.0)

    train.fit(problem.loss, problem.init_params(), problem.data(), problem.OPTIMIZER,
              checkpoint_dir=checkpoint_dir, callbacks=[hang], progress=False,
              **problem.kill_run_kwargs(mode))
    sys.exit("fit returned: the run was expected to be killed before its end")


if __name__ == "__main__":
    main(*sys.argv[1:4])
