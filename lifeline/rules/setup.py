"""Installing the operator's rules data in a process, from its settings.

The rules modules read no environment: :func:`lifeline.rules.calendar.default_calendar` and
:func:`lifeline.rules.regions.region_register` answer with what was installed, or with the
shipped data before anything was. A service's composition root (and the `lifeline` command)
calls :func:`install_rules` once at start, so a malformed operator file stops the process
there, naming the file and line.
"""

from __future__ import annotations

from lifeline.rules.calendar import StatutoryCalendar, install_calendar, load_calendar
from lifeline.rules.regions import RegionRegister, install_region_register, load_region_register
from lifeline.settings import Settings


def install_rules(settings: Settings) -> tuple[StatutoryCalendar, RegionRegister]:
    """Load the calendar from ``settings.calendar_dir`` and the region register from
    ``settings.regions_dir``, then install both. Both are loaded before either is installed: a
    bad file raises (``CalendarError`` / ``RegisterError``) and changes nothing."""
    calendar = load_calendar(settings.calendar_dir)
    register = load_region_register(settings.regions_dir)
    install_calendar(calendar)
    install_region_register(register)
    return calendar, register
