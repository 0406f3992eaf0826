//! HTTP research against a loopback server this test starts (allowed explicitly by port), and
//! refusals: a loopback URL not allowed (other port, by name, other loopback address), a
//! redirect to an un-allowed target, a metadata address. No outside network is used.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../src/research.rs"]
mod research;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nmk_kernel::research::{FetchPolicy, Research, ResearchError, ResearchLimits, SsrfRefusal};
use research::{HttpResearch, html_to_text, links, percent_encode};

/// path, status, body, Location header.
type Route = (&'static str, u16, String, Option<String>);

/// A tiny HTTP/1.1 server on 127.0.0.1 answering by path; it records every request path.
struct Server {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
    served: Arc<AtomicUsize>,
}

fn serve(routes: Vec<Route>) -> Server {
    serve_listener(TcpListener::bind("127.0.0.1:0").unwrap(), routes)
}

#[test]
fn research_fetches_allowed_loopback_pages_and_skips_refused_links() {
    let other = serve(vec![("/secret", 200, "SECRET".into(), None)]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let search = format!(
        "<html><body><a href=\"http://localhost:{port}/doc2\">by name</a>\
         <a href=\"http://127.0.0.1:{}/secret\">other port</a>\
         <a href=\"http://127.0.0.1:{port}/doc\">doc</a>\
         <a href=\"http://127.0.0.1:{port}/doc3\">doc3</a>\
         <a href=\"http://169.254.169.254/latest/meta-data\">metadata</a></body></html>",
        other.port
    );
    let doc = format!(
        "<html><head><style>p {{ color: red }}</style><script>var x = 1;</script></head>\
         <body><h1>Doubling</h1><p>To double a number, multiply it by two &amp; return it.</p>\
         {}</body></html>",
        "<p>more text</p>".repeat(1000)
    );
    let server = serve_listener(
        listener,
        vec![
            ("/search", 200, search, None),
            ("/doc", 200, doc, None),
            ("/doc3", 200, "<p>third document</p>".into(), None),
        ],
    );
    let r = HttpResearch::new(
        &format!("http://127.0.0.1:{port}/search?q={{q}}"),
        FetchPolicy::allowing_loopback_port(port),
    );
    let limits = ResearchLimits::default();
    let docs = r.search("double it algorithm", &limits).unwrap();
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert_eq!(docs[0].url, format!("http://127.0.0.1:{port}/doc"));
    assert!(
        docs[0]
            .text
            .starts_with("Doubling To double a number, multiply it by two & return it.")
    );
    assert!(!docs[0].text.contains("color"), "styles dropped");
    assert!(!docs[0].text.contains("var x"), "scripts dropped");
    assert!(docs[0].text.chars().count() <= limits.max_doc_chars);
    assert_eq!(docs[1].url, format!("http://127.0.0.1:{port}/doc3"));
    let hits = server.hits.lock().unwrap().clone();
    assert_eq!(hits[0], "/search?q=double+it+algorithm");
    assert!(
        !hits.iter().any(|h| h == "/doc2"),
        "localhost by name never fetched"
    );
    assert_eq!(
        other.served.load(Ordering::SeqCst),
        0,
        "un-allowed port never contacted"
    );
}

/// Serves `routes` on an already bound listener (so routes can name its port).
fn serve_listener(listener: TcpListener, routes: Vec<Route>) -> Server {
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let (h, s) = (hits.clone(), served.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            h.lock().unwrap().push(path.clone());
            s.fetch_add(1, Ordering::SeqCst);
            let bare = path.split('?').next().unwrap_or("/").to_owned();
            let (status, body, location) = routes
                .iter()
                .find(|r| r.0 == bare)
                .map_or((404, "not found".to_owned(), None), |r| {
                    (r.1, r.2.clone(), r.3.clone())
                });
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            if let Some(loc) = location {
                head.push_str(&format!("Location: {loc}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    Server { port, hits, served }
}

#[test]
fn un_allowed_loopback_urls_are_refused_before_any_connection() {
    let server = serve(vec![("/x", 200, "hello".into(), None)]);
    let port = server.port;
    // Public-only policy: the running local server is refused.
    let strict = HttpResearch::new("http://example.org/?q={q}", FetchPolicy::public_only());
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "file:///etc/passwd".to_owned(),
    ] {
        let e = strict.fetch(&url, 1024).unwrap_err();
        assert!(matches!(e, ResearchError::Refused(_)), "{url}: {e}");
    }
    // Allowed on another port only: still refused.
    let wrong_port = HttpResearch::new(
        "http://example.org/?q={q}",
        FetchPolicy::allowing_loopback_port(port.wrapping_add(1).max(1)),
    );
    assert_eq!(
        wrong_port.fetch(&format!("http://127.0.0.1:{port}/x"), 1024),
        Err(ResearchError::Refused(SsrfRefusal::Loopback))
    );
    assert_eq!(
        server.served.load(Ordering::SeqCst),
        0,
        "nothing reached the server"
    );

    // With the explicit allowance the same URL is fetched.
    let allowed = HttpResearch::new(
        "http://example.org/?q={q}",
        FetchPolicy::allowing_loopback_port(port),
    );
    assert_eq!(
        allowed
            .fetch(&format!("http://127.0.0.1:{port}/x"), 1024)
            .unwrap(),
        "hello"
    );
    // Bodies are capped.
    assert_eq!(
        allowed
            .fetch(&format!("http://127.0.0.1:{port}/x"), 3)
            .unwrap(),
        "hel"
    );
}

#[test]
fn a_redirect_to_an_un_allowed_target_is_refused() {
    let other = serve(vec![("/inner", 200, "INTERNAL".into(), None)]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_listener(
        listener,
        vec![
            (
                "/hop",
                302,
                String::new(),
                Some(format!("http://127.0.0.1:{}/inner", other.port)),
            ),
            (
                "/hop-name",
                302,
                String::new(),
                Some(format!("http://localhost:{port}/ok")),
            ),
            (
                "/hop-ok",
                302,
                String::new(),
                Some(format!("http://127.0.0.1:{port}/ok")),
            ),
            ("/ok", 200, "fine".into(), None),
        ],
    );
    let r = HttpResearch::new(
        "http://example.org/?q={q}",
        FetchPolicy::allowing_loopback_port(port),
    );
    assert_eq!(
        r.fetch(&format!("http://127.0.0.1:{port}/hop"), 1024),
        Err(ResearchError::Refused(SsrfRefusal::Loopback))
    );
    assert_eq!(other.served.load(Ordering::SeqCst), 0);
    assert_eq!(
        r.fetch(&format!("http://127.0.0.1:{port}/hop-name"), 1024),
        Err(ResearchError::Refused(SsrfRefusal::LoopbackName))
    );
    assert_eq!(
        r.fetch(&format!("http://127.0.0.1:{port}/hop-ok"), 1024)
            .unwrap(),
        "fine"
    );
    assert!(server.hits.lock().unwrap().contains(&"/ok".to_owned()));
}

#[test]
fn helpers_encode_extract_and_strip() {
    assert_eq!(percent_encode("a b&c/é"), "a+b%26c%2F%C3%A9");
    assert_eq!(
        links(
            "<a href=\"https://x.org/a?b=1&amp;c=2\">x</a><a href='http://y.org'>y</a><a href=\"/rel\">r</a><a href=\"https://x.org/a?b=1&amp;c=2\">dup</a>"
        ),
        ["https://x.org/a?b=1&c=2", "http://y.org"]
    );
    assert_eq!(
        html_to_text("<p>a&nbsp;<b>b</b></p>\n<script>evil()</script>c"),
        "a b c"
    );
    assert_eq!(html_to_text("plain  text\n"), "plain text");
}
