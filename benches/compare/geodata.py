#!/usr/bin/env python3
"""Data for benches/compare/run.sh, read from an MMDB file with the `maxminddb` reader (PyPI).

usage:
  geodata.py map DB          print "network country" for every IPv4 network that has a country
                             (the line format HAProxy's map_ip converter loads)
  geodata.py ips DB N SEED   print N IPv4 client addresses drawn with a fixed seed from the IPv4
                             networks of DB, weighted by network size (so the country mix is the
                             database's share of the IPv4 address space); a summary of the share
                             of RU/BY addresses goes to stderr
  geodata.py share DB FILE   print to stderr the share of addresses in FILE that DB maps to RU/BY
  geodata.py country DB IP   print the country DB gives IP ("-" for none)
  geodata.py pick DB CC      print one IPv4 address (the middle of the first network) that DB gives CC

Both the flat schema ({"country_code": "RU"}) and the GeoIP2 one ({"country": {"iso_code": ...}})
are understood.
"""
import bisect
import ipaddress
import random
import sys

import maxminddb

BLOCKED = {"RU", "BY"}


def country_of(record):
    """ISO country code of a record, or None."""
    if not isinstance(record, dict):
        return None
    code = record.get("country_code")
    if isinstance(code, str) and code:
        return code
    nested = record.get("country")
    if isinstance(nested, dict):
        code = nested.get("iso_code")
        if isinstance(code, str) and code:
            return code
    return None


def ipv4_networks(reader):
    """(network, country) for every IPv4 network of the database that carries a country.

    The reader yields IPv4 networks from the IPv4 subtree of an IPv6 database once, as
    IPv4Network objects; everything that is not IPv4 is skipped.
    """
    for network, record in reader:
        if network.version != 4:
            continue
        code = country_of(record)
        if code:
            yield network, code


def cmd_map(path):
    out = sys.stdout
    count = 0
    with maxminddb.open_database(path) as reader:
        for network, code in ipv4_networks(reader):
            out.write(f"{network} {code}\n")
            count += 1
    print(f"geodata: {count} IPv4 networks written", file=sys.stderr)


def cmd_ips(path, n, seed):
    starts, ends, cumulative = [], [], []
    total = 0
    with maxminddb.open_database(path) as reader:
        for network, _code in ipv4_networks(reader):
            starts.append(int(network.network_address))
            ends.append(int(network.broadcast_address))
            total += network.num_addresses
            cumulative.append(total)
        if not total:
            sys.exit("geodata: no IPv4 network with a country in " + path)
        rng = random.Random(seed)
        blocked = 0
        lines = []
        for _ in range(n):
            # an offset into the concatenated covered address space: size-weighted network choice
            k = rng.randrange(total)
            i = bisect.bisect_right(cumulative, k)
            base = cumulative[i - 1] if i else 0
            address = starts[i] + (k - base)
            assert address <= ends[i]
            ip = str(ipaddress.IPv4Address(address))
            if country_of(reader.get(ip)) in BLOCKED:
                blocked += 1
            lines.append(ip)
    sys.stdout.write("\n".join(lines) + "\n")
    print(
        f"geodata: {n} addresses (seed {seed}) from {len(starts)} IPv4 networks, "
        f"{blocked} RU/BY = {100.0 * blocked / n:.2f}%",
        file=sys.stderr,
    )


def cmd_share(path, ips_file):
    n = blocked = 0
    with maxminddb.open_database(path) as reader, open(ips_file) as f:
        for line in f:
            ip = line.strip()
            if not ip:
                continue
            n += 1
            if country_of(reader.get(ip)) in BLOCKED:
                blocked += 1
    print(f"geodata: {blocked}/{n} RU/BY = {100.0 * blocked / max(n, 1):.2f}%", file=sys.stderr)
    print(blocked)


def cmd_country(path, ip):
    with maxminddb.open_database(path) as reader:
        print(country_of(reader.get(ip)) or "-")


def cmd_pick(path, wanted):
    with maxminddb.open_database(path) as reader:
        for network, code in ipv4_networks(reader):
            if code == wanted:
                print(network[network.num_addresses // 2])
                return
    sys.exit(f"geodata: no IPv4 network for {wanted}")


def main(argv):
    if len(argv) == 3 and argv[1] == "map":
        cmd_map(argv[2])
    elif len(argv) == 5 and argv[1] == "ips":
        cmd_ips(argv[2], int(argv[3]), int(argv[4]))
    elif len(argv) == 4 and argv[1] == "share":
        cmd_share(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "country":
        cmd_country(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "pick":
        cmd_pick(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
