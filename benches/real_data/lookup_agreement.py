"""`geogate lookup --db A --db B ...` against the maxminddb reader with the documented field-by-field
layering: random global IPv4 addresses (4/5) and IPv6 addresses inside networks the databases know.
usage: lookup_agreement.py GEOGATE N DB... ; prints how many addresses had each field and the mismatches."""
import maxminddb, random, subprocess, sys, ipaddress, json
geogate, n, dbs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
readers = [maxminddb.open_database(d) for d in dbs]
random.seed(11)
ips = []
while len(ips) < n * 4 // 5:
    a = ipaddress.IPv4Address(random.getrandbits(32))
    if a.is_global: ips.append(str(a))
# IPv6 inside networks some database knows (announced space)
v6nets = []
for r in readers:
    if r.metadata().ip_version == 6:
        for k, (net, rec) in enumerate(r):
            if net.version == 6 and k % 50 == 0 and not net.subnet_of(ipaddress.ip_network("::ffff:0:0/96")) and net.prefixlen >= 16:
                v6nets.append(net)
            if len(v6nets) > 20000: break
while len(ips) < n:
    net = random.choice(v6nets)
    ips.append(str(net[random.getrandbits(min(64, net.num_addresses.bit_length() - 1))]))
def fields(rec):
    if rec is None: return {}
    out = {}
    cc = rec.get("country_code") or (rec.get("country") or {}).get("iso_code")
    if cc: out["country"] = cc.upper()
    st = (rec.get("state1") or "").strip()
    if st and cc: out["sub"] = st.upper() if st.upper().startswith(cc.upper() + "-") else f"{cc.upper()}:{st}"
    asn = rec.get("autonomous_system_number")
    if asn: out["asn"] = asn
    return out
def layered(ip):
    g = {}
    for r in readers:
        try: rec = r.get(ip)
        except ValueError: rec = None  # IPv6 address in an IPv4-only database
        f = fields(rec)
        if "country" in f or "sub" in f:
            g["country"] = f.get("country"); g["sub"] = f.get("sub")
        if "asn" in f: g["asn"] = f["asn"]
    return g
args = [geogate, "lookup"] + sum([["--db", d] for d in dbs], [])
out = subprocess.run(args, input="\n".join(ips) + "\n", capture_output=True, text=True, check=True).stdout.splitlines()
bad = {"country": 0, "sub": 0, "asn": 0}
seen = {"country": 0, "sub": 0, "asn": 0}
examples = []
for ip, line in zip(ips, out):
    cols = line.split("\t")
    got = {"country": None if cols[1] == "-" else cols[1], "sub": None if cols[2] == "-" else cols[2], "asn": None if cols[4] == "-" else int(cols[4])}
    want = layered(ip)
    for k in bad:
        if want.get(k) is not None: seen[k] += 1
        if got[k] != want.get(k):
            bad[k] += 1
            if len(examples) < 5: examples.append((ip, k, got[k], want.get(k)))
print(f"{len(out)} addresses ({sum(1 for i in ips if ':' in i)} IPv6); with data: {seen}; mismatches: {bad}; examples {examples}")
