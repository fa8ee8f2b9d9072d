"""Counts the networks per (country, region name) for names that look like the occupied regions, per
database: which names a rule must list. usage: region_names.py DB.mmdb..."""
import maxminddb, collections, re, sys
pat = re.compile(r"crim|krym|sevast|donet|luhan|lugan|zapor|kherson", re.I)
for f in sys.argv[1:]:
    r = maxminddb.open_database(f)
    c = collections.Counter()
    for net, rec in r:
        s = rec.get("state1", "")
        if s and pat.search(s):
            c[(rec.get("country_code"), s)] += 1
    print(f.split("/")[-1], sorted(c.items(), key=lambda x: -x[1]))
