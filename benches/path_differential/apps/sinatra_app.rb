# Sinatra app for the path differential: classic style, production settings, Rack::Protection
# on as by default. usage: ruby sinatra_app.rb PORT   (Debian's ruby-sinatra, served by puma)
require "json"
require "sinatra"

set :environment, :production
set :bind, "127.0.0.1"
set :port, Integer(ARGV[0])
set :server, "puma"
set :logging, false
set :show_exceptions, false

helpers do
  def echo(route, status_code = 200)
    status status_code
    content_type :json
    headers "X-Bench-App" => "sinatra"
    {
      app: "sinatra",
      route: route,
      path: request.path_info, # after Rack::Protection::PathTraversal, what the router matched
      host_header: request.env["HTTP_HOST"],
      fw_host: request.host,
      x_forwarded_for: request.env["HTTP_X_FORWARDED_FOR"],
      forwarded: request.env["HTTP_FORWARDED"],
      x_real_ip: request.env["HTTP_X_REAL_IP"],
      x_geo_client_ip: request.env["HTTP_X_GEO_CLIENT_IP"],
      x_forwarded_host: request.env["HTTP_X_FORWARDED_HOST"],
      fw_remote_ip: request.ip,
    }.to_json
  end
end

# Every verb, so the route decision is the router's alone (the harness always POSTs anyway).
# The protected actions and everything below them (geogate's rule is a segment prefix): a
# Mustermann splat `*` takes the rest, slashes included.
%i[get post put patch delete options].each do |verb|
  send(verb, "/signup") { echo("signup") }
  send(verb, "/signup/*") { echo("signup") }
  send(verb, "/api/v1/accounts") { echo("accounts") }
  send(verb, "/api/v1/accounts/*") { echo("accounts") }
end

not_found { echo("other", 404) }
