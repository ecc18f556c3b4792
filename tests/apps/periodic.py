"""An app with declared schedules: conveyor-worker applies them on start-up."""

from __future__ import annotations

from conveyor import App

app = App("periodic")


@app.periodic(every=0.2, id="app.tick", args=["tock"], catchup="skip")
@app.task(name="p.tick")
def tick(word: str) -> str:
    return word


@app.periodic(cron="0 3 * * *", tz="Europe/Berlin")
def nightly() -> int:
    return 3


app.add_schedule("app.weekly", "p.tick", ["weekly"], cron="0 9 * * mon", tz="America/New_York", priority=5)
