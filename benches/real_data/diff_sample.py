"""The share of the IPv4 space whose "block RU and BY" verdict differs between DB-IP City Lite and GeoLite2
City (IPv4 files), from N uniform random addresses read with maxminddb: the check of `geogate diff`'s total.
usage: diff_sample.py N SEED DBIP_IPV4.mmdb GEOLITE_IPV4.mmdb"""
import maxminddb, random, sys
a = maxminddb.open_database(sys.argv[3])
b = maxminddb.open_database(sys.argv[4])
random.seed(int(sys.argv[2])); n = int(sys.argv[1]); diff = 0
def blocked(r, ip):
    rec = r.get(ip)
    return bool(rec) and rec.get("country_code") in ("RU", "BY")
for _ in range(n):
    x = random.getrandbits(32); ip = f"{x>>24}.{(x>>16)&255}.{(x>>8)&255}.{x&255}"
    if blocked(a, ip) != blocked(b, ip): diff += 1
print(f"{n} random IPv4 addresses: {diff} change verdict -> {diff/n*100:.4f}% of the space, {diff/n*2**32:.0f} addresses")
