# A minimal Rails app (railties + actionpack from Debian's ruby-rails) for the path
# differential: the routes an ordinary app declares, with Rails' default `(.:format)`
# suffix handling. usage: RAILS_ENV=production puma -b tcp://127.0.0.1:PORT config.ru
require "logger"
require "rails"
require "action_controller/railtie"

class BenchApp < Rails::Application
  config.root = __dir__
  config.eager_load = false
  config.api_only = true
  config.secret_key_base = "path-differential-not-secret" * 3
  config.logger = Logger.new(nil)
  config.consider_all_requests_local = false
end

class EchoController < ActionController::API
  def signup = echo("signup")
  def accounts = echo("accounts")
  def other = echo("other", 404)

  private

  def echo(route, status = 200)
    h = request.headers
    response.headers["X-Bench-App"] = "rails"
    render status: status, json: {
      app: "rails",
      route: route,
      path: request.path,
      format: params[:format], # where a suffix such as .json went
      host_header: h["HTTP_HOST"],
      fw_host: request.host, # Rails prefers X-Forwarded-Host when present
      x_forwarded_for: h["HTTP_X_FORWARDED_FOR"],
      forwarded: h["HTTP_FORWARDED"],
      x_real_ip: h["HTTP_X_REAL_IP"],
      x_geo_client_ip: h["HTTP_X_GEO_CLIENT_IP"],
      x_forwarded_host: h["HTTP_X_FORWARDED_HOST"],
      fw_remote_ip: request.remote_ip,
    }
  end
end

BenchApp.initialize!
BenchApp.routes.draw do
  # `via: :all` rather than `post`: every method, so the route decision is the router's alone.
  # The protected actions with the default `(.:format)`, and everything below them (geogate's
  # rule is a segment prefix): a `*rest` glob, which keeps the optional format too.
  match "/signup", to: "echo#signup", via: :all
  match "/signup/*rest", to: "echo#signup", via: :all
  match "/api/v1/accounts", to: "echo#accounts", via: :all
  match "/api/v1/accounts/*rest", to: "echo#accounts", via: :all
  root to: "echo#other", via: :all
  match "*rest", to: "echo#other", via: :all
end

run BenchApp
