//! Outbound HTTP for steps granted hosts: the standard `wasi:http`
//! interfaces (wasmtime-wasi-http), with the host's own send behind them.
//!
//! Every request is checked before a byte leaves: its host and port against
//! the step's grants; the attempt's request and body-byte caps; then each
//! address the name resolves to. Loopback, private, link-local (cloud
//! metadata), shared, multicast and reserved addresses are refused unless
//! the grant names that exact address, and the connection goes to the
//! address that was checked, so a name that resolves differently a second
//! time (DNS rebinding) changes nothing. A refusal is an HTTP error code
//! inside the guest, recorded in the attempt's audit and logged.
//!
//! The request body is read whole (within the byte cap) before sending, and
//! sent with its length: a client that writes or finishes an empty body
//! after asking for the response (wstd does) never races the host.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::outcome::HttpUse;
use crate::grants::HostPattern;

/// What one attempt did over HTTP, shared with its response bodies.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    pub requests: Vec<HttpUse>,
    /// Body bytes so far, both ways.
    pub bytes: u64,
}

/// The hooks of one attempt: its grants, caps and deadline.
pub(crate) struct HttpGate {
    allowed: Vec<HostPattern>,
    deadline: Instant,
    max_requests: u64,
    max_bytes: u64,
    pub usage: Arc<Mutex<Usage>>,
    /// Set on every request, replacing the guest's own.
    traceparent: Option<http::HeaderValue>,
}

type Sent = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Answer = Box<dyn Future<Output = Result<(http::Response<WasiBody>, Sent), Error>> + Send>;

impl HttpGate {
    pub fn new(allowed: Vec<HostPattern>, deadline: Instant, max_requests: u64, max_bytes: u64) -> Self {
        HttpGate {
            allowed,
            deadline,
            max_requests,
            max_bytes,
            usage: Arc::default(),
            traceparent: None,
        }
    }

    /// Requests carry `traceparent` (the attempt's span).
    pub fn with_traceparent(mut self, traceparent: Option<&str>) -> Self {
        self.traceparent = traceparent.and_then(|t| http::HeaderValue::from_str(t).ok());
        self
    }

    /// Records a request; returns its index in the audit, or the refusal.
    fn admit(&self, method: &str, host: &str, port: u16) -> (usize, Result<(), (Error, String)>) {
        let mut usage = self.usage.lock().expect("usage lock");
        let index = usage.requests.len();
        let refusal = if index as u64 >= self.max_requests {
            Some((
                Error::ConnectionLimitReached,
                format!("over the limit of {} requests per attempt", self.max_requests),
            ))
        } else if !self.allowed.iter().any(|p| p.allows(host, port)) {
            Some((Error::HttpRequestDenied, "host not granted".to_string()))
        } else {
            None
        };
        usage.requests.push(HttpUse {
            method: method.to_string(),
            host: format!("{host}:{port}"),
            status: None,
            bytes: 0,
            error: refusal.as_ref().map(|(_, why)| why.clone()),
        });
        (index, refusal.map_or(Ok(()), Err))
    }
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Answer {
        if let Some(traceparent) = &self.traceparent {
            request.headers_mut().insert("traceparent", traceparent.clone());
        }
        let uri = request.uri().clone();
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let (index, admitted) = self.admit(request.method().as_str(), &host, port);
        let request_send = Outgoing {
            usage: self.usage.clone(),
            index,
            max_bytes: self.max_bytes,
            deadline: self.deadline,
            exact: self.allowed.iter().filter(|p| p.ip().is_some()).cloned().collect(),
        };
        Box::new(async move {
            if let Err((error, _)) = admitted {
                return Err(error);
            }
            let sent = tokio::time::timeout_at(
                request_send.deadline.into(),
                request_send.send(request, &host, port, tls),
            )
            .await
            .unwrap_or_else(|_| Err((Error::ConnectionTimeout, "the attempt's time ran out".into())));
            match sent {
                Ok(answer) => Ok(answer),
                Err((error, why)) => {
                    request_send.record(|u| u.error = Some(why));
                    Err(error)
                }
            }
        })
    }
}

/// One admitted request on its way.
struct Outgoing {
    usage: Arc<Mutex<Usage>>,
    index: usize,
    max_bytes: u64,
    deadline: Instant,
    /// Grants naming an IP address: that address (on that grant's ports)
    /// is reachable even when it is not public.
    exact: Vec<HostPattern>,
}

impl Outgoing {
    fn record(&self, change: impl FnOnce(&mut HttpUse)) {
        let mut usage = self.usage.lock().expect("usage lock");
        if let Some(entry) = usage.requests.get_mut(self.index) {
            change(entry);
        }
    }

    /// Counts `n` body bytes; `false` once the attempt is over its cap.
    fn count(usage: &Mutex<Usage>, index: usize, n: u64, max: u64) -> bool {
        let mut usage = usage.lock().expect("usage lock");
        usage.bytes += n;
        let over = usage.bytes > max;
        if let Some(entry) = usage.requests.get_mut(index) {
            entry.bytes += n;
            if over {
                entry.error = Some(format!("over the limit of {max} body bytes per attempt"));
            }
        }
        !over
    }

    async fn send(
        &self,
        request: http::Request<WasiBody>,
        host: &str,
        port: u16,
        tls: bool,
    ) -> Result<(http::Response<WasiBody>, Sent), (Error, String)> {
        let (parts, mut body) = request.into_parts();
        let mut buffered = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| (e, "the request body failed".to_string()))?;
            if let Ok(data) = frame.into_data() {
                if !Self::count(&self.usage, self.index, data.len() as u64, self.max_bytes) {
                    return Err((Error::HttpRequestBodySize(None), "over the body byte limit".into()));
                }
                buffered.extend_from_slice(&data);
            }
        }
        let address = self.resolve(host, port).await?;
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| (Error::ConnectionRefused, format!("cannot connect to {address}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Stream> = if tls {
            Box::new(tls_connect(host, stream).await?)
        } else {
            Box::new(stream)
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
                .await
                .map_err(|e| (Error::HttpProtocolError, format!("HTTP handshake failed: {e}")))?;
        let mut out = http::Request::from_parts(parts, Full::new(Bytes::from(buffered)));
        *out.uri_mut() = out
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .expect("a path and query parse as a URI");
        let length = http::HeaderValue::from(out.body().size_hint().exact().unwrap_or(0));
        out.headers_mut().insert(http::header::CONTENT_LENGTH, length);
        out.headers_mut().remove(http::header::TRANSFER_ENCODING);

        // The connection makes progress only while polled: drive it until
        // the response head arrives, then hand it to the caller.
        let mut connection = Box::pin(connection);
        let mut connection_done = false;
        let response = {
            let sending = sender.send_request(out);
            tokio::pin!(sending);
            loop {
                tokio::select! {
                    response = &mut sending => break response,
                    ended = &mut connection, if !connection_done => {
                        connection_done = true;
                        if let Err(e) = ended {
                            return Err((Error::HttpProtocolError, format!("the connection failed: {e}")));
                        }
                    }
                }
            }
        }
        .map_err(|e| (Error::HttpProtocolError, format!("no response: {e}")))?;
        self.record(|u| u.status = Some(response.status().as_u16()));
        let counted = response.map(|incoming| {
            Counted {
                incoming,
                usage: self.usage.clone(),
                index: self.index,
                max_bytes: self.max_bytes,
            }
            .boxed_unsync()
        });
        let drive: Sent = Box::new(async move {
            if !connection_done {
                connection.await.map_err(|_| Error::ConnectionTerminated)?;
            }
            Ok(())
        });
        Ok((counted, drive))
    }

    /// The first address of `host` that may be reached: public, or granted
    /// exactly.
    async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, (Error, String)> {
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| {
                    (
                        Error::DnsError {
                            rcode: Some("name not resolved".into()),
                            info_code: None,
                        },
                        format!("cannot resolve {host}: {e}"),
                    )
                })?
                .collect(),
        };
        addresses
            .iter()
            .copied()
            .find(|a| !is_internal(a.ip()) || self.exact.iter().any(|p| p.allows(&a.ip().to_string(), port)))
            .ok_or_else(|| {
                let shown: Vec<String> = addresses.iter().map(|a| a.ip().to_string()).collect();
                (
                    Error::DestinationIpProhibited,
                    format!(
                        "{host} resolves to a loopback, private or reserved address ({}) that is not granted exactly",
                        shown.join(", ")
                    ),
                )
            })
    }
}

/// Addresses a step never reaches unless granted that exact address.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, o2, _] = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o0 == 0
                || o0 >= 240
                || (o0 == 100 && (o1 & 0xc0) == 64) // shared address space (CGNAT)
                || (o0 == 192 && o1 == 0 && o2 == 0) // IETF protocol assignments
                || (o0 == 198 && (o1 & 0xfe) == 18) // benchmarking
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64, may embed an internal IPv4
                || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible
        }
    }
}

async fn tls_connect(
    host: &str,
    stream: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, (Error, String)> {
    use std::sync::OnceLock;
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::from(ip),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| (Error::TlsProtocolError, format!("{host} is not a TLS server name: {e}")))?,
    };
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| (Error::TlsCertificateError, format!("TLS with {host} failed: {e}")))
}

/// A response body that counts its bytes against the attempt's cap.
struct Counted {
    incoming: hyper::body::Incoming,
    usage: Arc<Mutex<Usage>>,
    index: usize,
    max_bytes: u64,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                if n > 0 && !Outgoing::count(&self.usage, self.index, n, self.max_bytes) {
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(None))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(Error::HttpResponseIncomplete))),
            other => other.map(|_| None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }
}

trait Stream: AsyncRead + AsyncWrite + std::marker::Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + std::marker::Send + Unpin + 'static> Stream for T {}

#[cfg(test)]
mod tests {
    use super::is_internal;

    #[test]
    fn internal_addresses_are_recognized() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
            "fe80::1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }
}
