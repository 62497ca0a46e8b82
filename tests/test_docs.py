"""The front door: a short README that speaks to its user, the documentation site's home page made from it, an API
page for every public module, and the figures the pages show. (`mkdocs build --strict`, in the test command,
checks every link and API reference.)

    python tests/test_docs.py    # writes docs/index.md from README.md after the README changed
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PUBLIC_PACKAGES = ("anchor", "models", "backbones", "layers", "losses", "optimizers", "training", "data",
                   "evaluation", "stats", "guard", "export", "inference")


def site_home(readme):
    """docs/index.md: the README with its links made relative to docs/."""
    text = readme.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")
    return "<!-- made from README.md by `python tests/test_docs.py`: edit the README -->\n" + text


def test_the_readme_is_short_and_speaks_to_its_user():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for words in ("../shared", "the issue", "this machine", "issue "):
        assert words not in readme.lower(), words
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert headings == ["What it found", "Install", "Two commands", "Use it with `model.fit`",
                        "Export, and predict at the bedside", "Where to go next", "Citation", "License"], headings
    assert "Intended use" in readme and "not a medical device" in readme
    for path in re.findall(r"\]\(((?:docs/)?[\w/.-]+\.(?:md|png))\)", readme):
        assert (ROOT / path).is_file(), path


def test_the_site_home_is_the_readme():
    expected = site_home((ROOT / "README.md").read_text())
    assert (DOCS / "index.md").read_text() == expected, "run: python tests/test_docs.py"


def test_every_public_module_has_an_api_page():
    import keras_mamsf

    facade = {name for name, module in keras_mamsf._EXPORTS.items() if module == f"keras_mamsf.{name}"}
    assert facade <= set(PUBLIC_PACKAGES)
    for package in PUBLIC_PACKAGES:
        page = (DOCS / "api" / f"{package}.md").read_text()
        modules = sorted(p.stem for p in (ROOT / "keras_mamsf" / package).glob("*.py") if p.stem != "__init__")
        for module in modules:
            assert f"::: keras_mamsf.{package}.{module}\n" in page, (package, module)
    cli = (DOCS / "api" / "cli.md").read_text()
    from keras_mamsf.cli.main import SUBCOMMANDS

    for command in SUBCOMMANDS:
        assert f"::: keras_mamsf.cli.{SUBCOMMANDS[command].__name__.rsplit('.', 1)[-1]}\n" in cli, command


def test_every_figure_a_page_shows_is_kept_and_small():
    shown = set()
    for page in DOCS.rglob("*.md"):
        for path in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text()):
            target = (page.parent / path).resolve()
            assert target.is_file(), (page.name, path)
            assert target.stat().st_size < 300_000, path
            shown.add(target.name)
    assert {"roc_curves_pretrained.png", "delta_forest.png", "drift_curves.png"} <= shown
    assert sum(name.startswith("gradcam_") for name in shown) == 3


def test_license_and_citation_say_what_the_package_says():
    import configparser

    from keras_mamsf.version import __version__

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["license"] == "Apache-2.0"
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    citation = (ROOT / "CITATION.cff").read_text()
    assert f"\nversion: {__version__}\n" in citation and "license: Apache-2.0" in citation
    assert f"version = {{{__version__}}}" in (ROOT / "README.md").read_text()


if __name__ == "__main__":
    (DOCS / "index.md").write_text(site_home((ROOT / "README.md").read_text()))
