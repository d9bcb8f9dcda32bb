"""`reportguard review` stays light to import and refuses unsafe server settings before binding."""
import subprocess
import sys

from reportguard.review.cli import main as review_main


def test_building_the_review_parser_imports_nothing_heavy():
    code = ("import argparse, sys\n"
            "from reportguard.review.cli import add_review_commands\n"
            "add_review_commands(argparse.ArgumentParser().add_subparsers())\n"
            "heavy = [m for m in ('fastapi', 'sqlalchemy', 'sklearn', 'cleanlab', 'uvicorn', 'alembic', 'torch') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_serve_refuses_local_only_on_a_public_address(tmp_path, capsys):
    assert review_main(["review", "serve", "--local-only", "--host", "0.0.0.0",
                        "--db", f"sqlite:///{tmp_path / 'v.sqlite'}"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_serve_requires_an_explicit_login_mode(tmp_path, capsys):
    assert review_main(["review", "serve", "--db", f"sqlite:///{tmp_path / 'v.sqlite'}"]) == 2
    assert "--tokens FILE" in capsys.readouterr().err


def test_tokens_command(tmp_path, capsys):
    out = tmp_path / "tokens.txt"
    assert review_main(["review", "tokens", "alice", "bob", "--adjudicator", "carol", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["alice", "bob", "carol"]
    assert lines[2].endswith(" adjudicator") and lines[0].endswith(" reviewer")
