//! gRPC through geogate: a tonic client, gRPC services written by hand on tonic's server
//! codec (messages derived with `prost`, no protoc) behind an h2c or a TLS upstream, the
//! gRPC answer to a blocked call, tag headers as gRPC metadata, and HTTP/2 trailers carried
//! both ways.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// `tonic::Status` is the error type tonic's service traits and client return.
#![allow(clippy::result_large_err)]

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::convert::Infallible;
use std::future::Ready;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pki::Pki;
use support::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tonic::codec::ProstCodec;
use tonic::transport::Channel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type UpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// `test.Greeter` request.
#[derive(Clone, PartialEq, prost::Message)]
struct Hello {
    #[prost(string, tag = "1")]
    name: String,
    /// How many replies `Count` streams back.
    #[prost(uint32, tag = "2")]
    count: u32,
}

/// `test.Greeter` reply: the greeting, and the request metadata the server saw.
#[derive(Clone, PartialEq, prost::Message)]
struct Reply {
    #[prost(string, tag = "1")]
    message: String,
    /// `x-geo-country` as the server saw it.
    #[prost(string, tag = "2")]
    country: String,
    /// `x-geo-subdivision` as the server saw it.
    #[prost(string, tag = "3")]
    subdivision: String,
    /// `te` as the server saw it.
    #[prost(string, tag = "4")]
    te: String,
}

const SAY_HELLO: &str = "/test.Greeter/SayHello";
const COUNT: &str = "/test.Greeter/Count";

/// `SayHello`: one reply naming the caller and the metadata it came with.
struct SayHello;

/// `Count`: `count` replies, `1` to `count`; above 3, three replies and then
/// RESOURCE_EXHAUSTED, which only the response's trailers carry.
struct Count;

fn metadata(req: &tonic::Request<Hello>, name: &str) -> String {
    req.metadata().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

impl tonic::server::UnaryService<Hello> for SayHello {
    type Response = Reply;
    type Future = Ready<Result<tonic::Response<Reply>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<Hello>) -> Self::Future {
        let reply = Reply {
            message: format!("hello {}", req.get_ref().name),
            country: metadata(&req, "x-geo-country"),
            subdivision: metadata(&req, "x-geo-subdivision"),
            te: metadata(&req, "te"),
        };
        std::future::ready(Ok(tonic::Response::new(reply)))
    }
}

impl tonic::server::ServerStreamingService<Hello> for Count {
    type Response = Reply;
    type ResponseStream = tokio_stream::Iter<std::vec::IntoIter<Result<Reply, tonic::Status>>>;
    type Future = Ready<Result<tonic::Response<Self::ResponseStream>, tonic::Status>>;

    fn call(&mut self, req: tonic::Request<Hello>) -> Self::Future {
        let n = req.get_ref().count;
        let mut replies: Vec<Result<Reply, tonic::Status>> =
            (1..=n.min(3)).map(|i| Ok(Reply { message: i.to_string(), ..Reply::default() })).collect();
        if n > 3 {
            replies.push(Err(tonic::Status::resource_exhausted("three at most")));
        }
        std::future::ready(Ok(tonic::Response::new(tokio_stream::iter(replies))))
    }
}

/// Requests an upstream answered.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
}

/// The upstream's routes: the two gRPC methods, and `/trailers`, which answers with the
/// request's trailers echoed as `echo-<name>` response trailers (plus `upstream: done`) and
/// the request body's length as the body.
async fn route(req: Request<Incoming>, seen: Arc<Seen>) -> Result<Response<UpBody>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let boxed = |r: Response<tonic::body::Body>| r.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync());
    match req.uri().path() {
        SAY_HELLO => {
            Ok(boxed(tonic::server::Grpc::new(ProstCodec::<Reply, Hello>::default()).unary(SayHello, req).await))
        }
        COUNT => Ok(boxed(
            tonic::server::Grpc::new(ProstCodec::<Reply, Hello>::default()).server_streaming(Count, req).await,
        )),
        "/trailers" => {
            let collected = req.into_body().collect().await.unwrap();
            let mut trailers = HeaderMap::new();
            for (name, value) in collected.trailers().into_iter().flatten() {
                trailers.insert(http::HeaderName::try_from(format!("echo-{name}")).unwrap(), value.clone());
            }
            trailers.insert("upstream", HeaderValue::from_static("done"));
            let len = collected.to_bytes().len();
            let frames: Vec<Result<Frame<Bytes>, BoxError>> =
                vec![Ok(Frame::data(Bytes::from(format!("{len} bytes")))), Ok(Frame::trailers(trailers))];
            Ok(Response::new(BodyExt::boxed_unsync(StreamBody::new(tokio_stream::iter(frames)))))
        }
        _ => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(BodyExt::boxed_unsync(http_body_util::Empty::new().map_err(|never| match never {})))
            .unwrap()),
    }
}

/// Serves HTTP/2 (prior knowledge) on one accepted connection.
async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S, seen: Arc<Seen>) {
    let svc = service_fn(move |req| route(req, seen.clone()));
    let _ =
        hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(io), svc).await;
}

/// A gRPC upstream on 127.0.0.1:0: h2c, or TLS (ALPN h2) with `tls`.
async fn grpc_upstream(tls: Option<Arc<rustls::ServerConfig>>) -> (SocketAddr, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { break };
            let (seen, tls) = (s2.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => serve_h2(tcp, seen).await,
                    Some(config) => {
                        if let Ok(s) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                            serve_h2(s, seen).await;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// geogate in front of `url`: clients by `X-Forwarded-For` from 127.0.0.1; RU blocked with a
/// message to percent-encode, DE blocked with grpc-status 14, UA-43 tagged.
async fn proxy(url: &str, upstream_extra: &str, files: &[(&str, &[u8])]) -> Proxy {
    let toml = format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }}

[[upstream]]
name = "grpc"
url = "{url}"
{upstream_extra}

[admin]
address = "127.0.0.1:0"

[reload]
watch = false

{GEO_SOURCES}

[policy]
default = "allow"

[[rule]]
name = "no-ru"
action = "block"
countries = ["RU"]
grpc_message = "Niedostępne w Twoim regionie – 100% blocked"

[[rule]]
name = "no-de"
action = "block"
countries = ["DE"]
grpc_status = 14
grpc_message = "down for you"

[[rule]]
name = "crimea"
action = "tag"
subdivisions = ["UA-43"]
"#
    );
    let unused = Upstream { addr: SocketAddr::from(([127, 0, 0, 1], 9)) };
    Proxy::start_with_files(&toml, &unused, files).await
}

/// A tonic client connected to geogate (cleartext HTTP/2).
async fn client(p: &Proxy) -> tonic::client::Grpc<Channel> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", p.addr)).unwrap().connect().await.unwrap();
    tonic::client::Grpc::new(channel)
}

fn request(name: &str, count: u32, client_ip: &str) -> tonic::Request<Hello> {
    let mut req = tonic::Request::new(Hello { name: name.to_owned(), count });
    req.metadata_mut().insert("x-forwarded-for", client_ip.parse().unwrap());
    req
}

async fn say_hello(c: &mut tonic::client::Grpc<Channel>, name: &str, client_ip: &str) -> Result<Reply, tonic::Status> {
    c.ready().await.unwrap();
    let codec = ProstCodec::<Hello, Reply>::default();
    c.unary(request(name, 0, client_ip), PathAndQuery::from_static(SAY_HELLO), codec).await.map(|r| r.into_inner())
}

/// The replies of `Count`, and how the stream ended.
async fn count_until(
    c: &mut tonic::client::Grpc<Channel>,
    n: u32,
    client_ip: &str,
) -> (Vec<String>, Result<(), tonic::Status>) {
    c.ready().await.unwrap();
    let codec = ProstCodec::<Hello, Reply>::default();
    let mut out = Vec::new();
    let mut stream = match c.server_streaming(request("n", n, client_ip), PathAndQuery::from_static(COUNT), codec).await
    {
        Ok(s) => s.into_inner(),
        Err(status) => return (out, Err(status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(reply)) => out.push(reply.message),
            Ok(None) => return (out, Ok(())),
            Err(status) => return (out, Err(status)),
        }
    }
}

async fn count(c: &mut tonic::client::Grpc<Channel>, n: u32, client_ip: &str) -> Result<Vec<String>, tonic::Status> {
    let (replies, end) = count_until(c, n, client_ip).await;
    end.map(|()| replies)
}

/// A unary and a server-streaming call, and `TE: trailers` seen by the server.
async fn calls_pass(p: &Proxy, seen: &Seen) {
    let mut c = client(p).await;
    let reply = say_hello(&mut c, "world", "100.64.0.10").await.unwrap();
    assert_eq!(reply.message, "hello world");
    assert_eq!(reply.te, "trailers", "TE: trailers reaches an HTTP/2 upstream");
    let numbers = count(&mut c, 3, "100.64.0.10").await.unwrap();
    assert_eq!(numbers, ["1", "2", "3"]);
    // The status after the messages travels in the response's trailers.
    let (numbers, end) = count_until(&mut c, 5, "100.64.0.10").await;
    assert_eq!(numbers, ["1", "2", "3"]);
    let status = end.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "three at most");
    // A stream of none: the upstream's Trailers-Only answer, passed through.
    assert!(count(&mut c, 0, "100.64.0.10").await.unwrap().is_empty());
    assert_eq!(seen.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn grpc_calls_through_an_h2c_upstream() {
    let (addr, seen) = grpc_upstream(None).await;
    let p = proxy(&format!("http://{addr}"), r#"protocol = "h2c""#, &[]).await;
    calls_pass(&p, &seen).await;
    p.shutdown().await;
}

#[tokio::test]
async fn grpc_calls_through_a_tls_upstream_with_a_private_ca() {
    let pki = Pki::new("grpc CA");
    let leaf = pki.leaf(&["localhost"]);
    let (addr, seen) = grpc_upstream(Some(Pki::server(&leaf, &[b"h2"], None))).await;
    let ca = pki.ca_pem();
    for protocol in ["h2", "auto"] {
        seen.requests.store(0, Ordering::SeqCst);
        let p = proxy(
            &format!("https://localhost:{}", addr.port()),
            &format!("ca = \"ca.pem\"\nprotocol = \"{protocol}\""),
            &[("ca.pem", ca.as_bytes())],
        )
        .await;
        calls_pass(&p, &seen).await;
        p.shutdown().await;
    }
}

#[tokio::test]
async fn blocked_grpc_call_ends_with_the_configured_status_and_message() {
    let (addr, seen) = grpc_upstream(None).await;
    let p = proxy(&format!("http://{addr}"), r#"protocol = "h2c""#, &[]).await;
    let mut c = client(&p).await;
    let status = say_hello(&mut c, "x", "203.0.113.7").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(status.message(), "Niedostępne w Twoim regionie – 100% blocked");
    let status = count(&mut c, 3, "203.0.113.7").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // A rule's own grpc_status.
    let status = say_hello(&mut c, "x", "192.0.2.20").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "down for you");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0, "no blocked call reached the upstream");

    // On the wire: 200, application/grpc, a Trailers-Only answer (headers ending the stream).
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{}{SAY_HELLO}", p.addr))
        .header("content-type", "application/grpc+proto")
        .header("te", "trailers")
        .header("x-forwarded-for", "203.0.113.7")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(resp.headers()["grpc-status"], "7");
    assert_eq!(resp.headers()["grpc-message"], "Niedost%C4%99pne w Twoim regionie %E2%80%93 100%25 blocked");
    assert!(resp.body().is_end_stream(), "the HEADERS frame ends the stream");
    p.shutdown().await;
}

#[tokio::test]
async fn tag_headers_reach_the_grpc_server_as_metadata() {
    let (addr, seen) = grpc_upstream(None).await;
    let p = proxy(&format!("http://{addr}"), r#"protocol = "h2c""#, &[]).await;
    let mut c = client(&p).await;
    let reply = say_hello(&mut c, "crimea", "198.51.100.7").await.unwrap();
    assert_eq!(reply.message, "hello crimea");
    assert_eq!(reply.country, "UA");
    assert_eq!(reply.subdivision, "UA-43");
    // Untagged clients: no tag metadata, whatever the client sent itself.
    let mut req = request("other", 0, "100.64.0.10");
    req.metadata_mut().insert("x-geo-country", "US".parse().unwrap());
    c.ready().await.unwrap();
    let reply = c
        .unary(req, PathAndQuery::from_static(SAY_HELLO), ProstCodec::<Hello, Reply>::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.country, "", "a client's own tag header is stripped");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    p.shutdown().await;
}

#[tokio::test]
async fn trailers_are_forwarded_both_ways() {
    let (addr, _) = grpc_upstream(None).await;
    let p = proxy(&format!("http://{addr}"), r#"protocol = "h2c""#, &[]).await;
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut trailers = HeaderMap::new();
    trailers.insert("checksum", HeaderValue::from_static("abc123"));
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"hello "))),
        Ok(Frame::data(Bytes::from_static(b"world"))),
        Ok(Frame::trailers(trailers)),
    ];
    let req = Request::post(format!("http://{}/trailers", p.addr))
        .header("te", "trailers")
        .header("x-forwarded-for", "100.64.0.10")
        .body(StreamBody::new(tokio_stream::iter(frames)))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(collected.to_bytes(), "11 bytes");
    assert_eq!(trailers["echo-checksum"], "abc123", "the request's trailer reached the upstream");
    assert_eq!(trailers["upstream"], "done", "the upstream's trailer reached the client");
    p.shutdown().await;
}
