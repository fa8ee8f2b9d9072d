"""`geogate lookup --db F.csv ...` against the range files themselves, looked up naively (binary search,
the narrowest of overlapping lines): random IPv4, IPv6 inside listed ranges, and 2,000 ranges' edges.
usage: ranges_agreement.py GEOGATE N FILE.csv..."""
import csv, bisect, random, subprocess, sys, ipaddress
geogate, n, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ranges = {4: [], 6: []}
for f in files:
    for row in csv.reader(open(f, newline="")):
        a, b = ipaddress.ip_address(row[0]), ipaddress.ip_address(row[1])
        ranges[a.version].append((int(a), int(b), int(row[2])))
for v in ranges: ranges[v].sort()
starts = {v: [r[0] for r in ranges[v]] for v in ranges}
def naive(ip):
    a = ipaddress.ip_address(ip); rs = ranges[a.version]
    i = bisect.bisect_right(starts[a.version], int(a)) - 1
    # every line containing the address (the files have at most a few overlaps); narrowest wins
    cands = [rs[j] for j in range(max(0, i - 3), i + 1) if rs[j][0] <= int(a) <= rs[j][1]]
    if not cands: return None
    best = min(cands, key=lambda r: r[1] - r[0])
    return best[2] if best[2] != 0 else None
random.seed(5)
ips = []
for _ in range(n * 4 // 5): ips.append(str(ipaddress.IPv4Address(random.getrandbits(32))))
while len(ips) < n:
    lo, hi, _ = random.choice(ranges[6]); ips.append(str(ipaddress.IPv6Address(random.randint(lo, hi))))
# range edges too
for v in (4, 6):
    for lo, hi, _ in random.sample(ranges[v], 2000):
        for x in (lo, hi, hi + 1):
            if x < (1 << (32 if v == 4 else 128)):
                ips.append(str(ipaddress.ip_address(x) if v == 6 else ipaddress.IPv4Address(x)))
args = [geogate, "lookup"] + sum([["--db", f] for f in files], [])
out = subprocess.run(args, input="\n".join(ips) + "\n", capture_output=True, text=True, check=True).stdout.splitlines()
bad = 0; known = 0; ex = []
for ip, line in zip(ips, out):
    cols = line.split("\t"); got = None if cols[4] == "-" else int(cols[4]); want = naive(ip)
    known += want is not None
    if got != want:
        bad += 1
        if len(ex) < 5: ex.append((ip, got, want))
print(f"{len(out)} addresses ({known} with an ASN); mismatches {bad}; {ex}")
