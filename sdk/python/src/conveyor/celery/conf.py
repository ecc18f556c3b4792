"""`app.conf`: the app's settings, read and written as Celery's are (attributes, items, `update`),
each value checked against the settings table when it is set."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from conveyor.celery.exceptions import Unsupported
from conveyor.celery.settings import DEFAULTS, check_setting


class Settings(MutableMapping[str, Any]):
    """Settings set so far, over Celery's defaults. `on_change(names)` runs after each change
    (the app re-reads what depends on them); a refused setting raises Unsupported and changes nothing."""

    def __init__(self, on_change: Callable[[set[str]], None]) -> None:
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_on_change", on_change)

    def __getitem__(self, name: str) -> Any:
        values: dict[str, Any] = self._values
        if name in values:
            return values[name]
        if name in DEFAULTS:
            return DEFAULTS[name]
        raise KeyError(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.update({name: value})

    def __delitem__(self, name: str) -> None:
        del self._values[name]
        self._on_change({name})

    def __iter__(self) -> Iterator[str]:
        return iter({**DEFAULTS, **self._values})

    def __len__(self) -> int:
        return len({**DEFAULTS, **self._values})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no setting {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def update(self, other: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:  # type: ignore[override]
        """Sets several settings at once; all are checked before any is kept."""
        checked = self._checked({**(other or {}), **kwargs}, self._values)
        self._apply({**self._values, **checked}, set(checked))

    def replace_all(self, changes: Mapping[str, Any], keep: Mapping[str, Any]) -> None:
        """Drops every setting, then sets `changes` and `keep`, which wins (config_from_object: the
        app's constructor arguments win over the config object, as in Celery)."""
        checked = self._checked(changes, keep)
        self._apply({**checked, **keep}, set(self._values) | set(checked))

    def _apply(self, values: dict[str, Any], changed: set[str]) -> None:
        """Keeps `values` and tells the app; if the app refuses them (a beat entry's options, say),
        the settings before are put back and the refusal raised."""
        before = dict(self._values)
        self._values.clear()
        self._values.update(values)
        try:
            self._on_change(changed)
        except BaseException:
            self._values.clear()
            self._values.update(before)
            self._on_change(changed)
            raise

    @staticmethod
    def _checked(changes: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
        return {name: check_setting(name, value) for name, value in changes.items()}

    def zone(self) -> str | None:
        """The timezone crontabs and naive datetimes are read in (None: UTC). enable_utc=False
        without a timezone (the machine's local time) is refused here, where it is used, since
        Celery programs set enable_utc and timezone one after the other."""
        if self["enable_utc"] is False and not self["timezone"]:
            raise Unsupported("enable_utc=False", "without timezone= it means the machine's local time; give "
                              "timezone='Area/City' (crontabs fire in a named zone)")
        return self["timezone"]  # type: ignore[no-any-return]

    def changes(self) -> dict[str, Any]:
        """The settings set so far (not the defaults)."""
        return dict(self._values)

    def __repr__(self) -> str:
        return f"<Settings: {self._values!r}>"
