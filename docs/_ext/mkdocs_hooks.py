"""MkDocs hooks (mkdocs.yml `hooks:`).

The benchmark plots live in bench/results/ beside the JSON they were drawn
from, outside docs/.  They are added to the site as results/<name>.png, so a
page links to them as `results/<name>.png` and the build checks those links
like any other.
"""

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def on_files(files, config):
    for plot in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/{plot.name}", abs_src_path=str(plot)))
    return files
