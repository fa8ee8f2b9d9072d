// Express app for the path differential, with Express's defaults (case-insensitive, non-strict
// routing). usage: node express_app.js PORT EXPRESS_DIR NAME
//   EXPRESS_DIR: the node_modules/express installed from npm into the cache dir (not the repo)
//   NAME: label echoed back (express or express4), so one file serves both major versions
const [port, expressDir, name] = process.argv.slice(2);
const express = require(expressDir);
const app = express();

function echo(route, status) {
  return (req, res) => {
    res.status(status).set("X-Bench-App", name).json({
      app: name,
      route,
      path: req.path, // the pathname the router matched (Express does not decode it)
      host_header: req.headers.host ?? null,
      fw_host: req.hostname ?? null,
      x_forwarded_for: req.headers["x-forwarded-for"] ?? null,
      forwarded: req.headers["forwarded"] ?? null,
      x_real_ip: req.headers["x-real-ip"] ?? null,
      x_geo_client_ip: req.headers["x-geo-client-ip"] ?? null,
      x_forwarded_host: req.headers["x-forwarded-host"] ?? null,
      fw_remote_ip: req.ip ?? null,
    });
  };
}

// The protected actions and everything below them (geogate's rule is a segment prefix). The
// wildcard is spelled per major: Express 4's path-to-regexp 0.1 takes a bare `*` (zero or more
// characters); Express 5's path-to-regexp 8 wants a named `*rest` (one or more; the bare
// `/signup/` is the base route's, non-strict).
const major = Number(require(expressDir + "/package.json").version.split(".")[0]);
const below = (base) => (major >= 5 ? base + "/*rest" : base + "/*");
app.all(["/signup", below("/signup")], echo("signup", 200));
app.all(["/api/v1/accounts", below("/api/v1/accounts")], echo("accounts", 200));
app.use(echo("other", 404)); // catch-all: whatever no route took
app.listen(Number(port), "127.0.0.1");
