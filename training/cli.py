"""The `ms2agent` command line (typer)."""
import json
import os

import typer

from agent.vulkan_fallback import LOADER_VARIABLES, activate

app = typer.Typer(help="Train, evaluate and export ManiSkill2 point-cloud policies.", no_args_is_help=True)


@app.command()
def info() -> None:
    """Show which Vulkan setup ManiSkill2 will use on this machine and the key package versions."""
    import mani_skill2
    import numpy
    import sapien

    software = activate()
    typer.echo("Vulkan: " + ("software fallback (Mesa lavapipe + compatibility layer)" if software else "system driver"))
    typer.echo(json.dumps({key: os.environ.get(key) for key in LOADER_VARIABLES}, indent=2))
    typer.echo("mani_skill2 {}, sapien {}, numpy {}".format(mani_skill2.__version__, sapien.__version__, numpy.__version__))
