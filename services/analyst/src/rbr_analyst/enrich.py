"""Country and AS of source addresses, from an offline database shipped inside a package.

The database is `geoip2fast`'s Country+ASN file (MaxMind GeoLite2 data converted by the
package, IPv4 and IPv6): nothing is downloaded at run time, and every enriched indicator
records the database and its date (`geo_source`). Private, reserved and other non-global
addresses get nothing. The file is read once per process (about 0.3 s), on first use.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from geoip2fast import GeoIP2Fast  # type: ignore[import-untyped]

from rbr_runtime.intel.indicators import is_public_ip

DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})$")


@dataclass(frozen=True)
class Geo:
    """What the database says of one address."""

    country: str | None
    as_org: str | None
    source: str


class GeoDatabase:
    """The offline country/AS database, loaded on first use."""

    def __init__(self, data_file: str = DATA_FILE) -> None:
        self._data_file = data_file

    @functools.cached_property
    def _reader(self) -> Any:
        return GeoIP2Fast(verbose=False, geoip2fast_data_file=self._data_file)

    @functools.cached_property
    def source(self) -> str:
        """Returns the database's name and date, e.g. `GeoLite2 2024-06-18 (geoip2fast)`."""
        info = str(self._reader.get_database_info().get("source_info", ""))
        match = _DATE.search(info)
        date = f"{match[1]}-{match[2]}-{match[3]}" if match else "unknown date"
        return f"GeoLite2 {date} (geoip2fast)"

    def lookup(self, address: str) -> Geo | None:
        """Returns the country and AS organisation of a public address; None for others."""
        if not is_public_ip(address):
            return None
        answer = self._reader.lookup(address)
        country = answer.country_code if _COUNTRY.match(answer.country_code or "") else None
        as_org = (answer.asn_name or "").strip()[:255] or None
        if country is None and as_org is None:
            return None
        return Geo(country=country, as_org=as_org, source=self.source)


@functools.cache
def shared_database() -> GeoDatabase:
    """Returns the process's one database (its tables take about 100 MB once loaded)."""
    return GeoDatabase()
