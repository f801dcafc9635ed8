"""``python -m trinity_lightning.rounds.web QUERIES``: the same as ``trinity label --web QUERIES``."""

from trinity_lightning.rounds.web.app import web_main

if __name__ == "__main__":
    raise SystemExit(web_main())
