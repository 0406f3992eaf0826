//! HTTP research for the escalation ladder's tier 4: a search page fetched from a configured URL
//! template, up to a few of the pages it links to, reduced to plain text and capped.
//!
//! Every fetch obeys the kernel's [`FetchPolicy`]: the URL (scheme, host name or literal
//! address) is checked before anything is resolved; the name is resolved once by our resolver,
//! every resolved address is checked, and the connection goes only to those checked addresses
//! (ureq connects to what the resolver returns). Redirects pass through the same resolver, so a
//! redirect to an internal address is refused too. Environment proxies are ignored (a proxy
//! would resolve on our behalf and bypass the check). Bodies are read up to a byte cap.
//!
//! The kernel only calls this when capability `net:fetch` is granted; the CLI grants it only
//! with `--research`.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use nmk_kernel::research::{Document, FetchPolicy, Research, ResearchError, ResearchLimits};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// The default search page: DuckDuckGo's HTML endpoint. `{q}` is replaced by the query.
pub const DEFAULT_SEARCH_URL: &str = "https://html.duckduckgo.com/html/?q={q}";

/// A resolver that refuses non-public targets before and after resolution.
struct GuardedResolver {
    policy: FetchPolicy,
    inner: DefaultResolver,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let refuse = |r| ureq::Error::Other(Box::new(r));
        self.policy.check_url(&uri.to_string()).map_err(refuse)?;
        let addrs = self.inner.resolve(uri, config, timeout)?;
        for a in addrs.iter() {
            self.policy.check_addr(*a).map_err(refuse)?;
        }
        Ok(addrs)
    }
}

/// Research over HTTP(S).
pub struct HttpResearch {
    agent: ureq::Agent,
    search_url: String,
    policy: FetchPolicy,
}

impl HttpResearch {
    /// Research through `search_url` (a template containing `{q}`), under `policy`.
    pub fn new(search_url: &str, policy: FetchPolicy) -> HttpResearch {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(true)
            .proxy(None)
            .max_redirects(3)
            .timeout_global(Some(Duration::from_secs(20)))
            .max_response_header_size(32 * 1024)
            .user_agent(concat!("nmk-research/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        let resolver = GuardedResolver {
            policy,
            inner: DefaultResolver::default(),
        };
        HttpResearch {
            agent: ureq::Agent::with_parts(config, DefaultConnector::new(), resolver),
            search_url: search_url.to_owned(),
            policy,
        }
    }

    /// Fetches `url` (checked first), reading at most `max_bytes`; the body as text (lossy).
    pub fn fetch(&self, url: &str, max_bytes: u64) -> Result<String, ResearchError> {
        self.policy.check_url(url)?;
        let mut resp = self.agent.get(url).call().map_err(map_err)?;
        let mut buf = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(max_bytes)
            .read_to_end(&mut buf)
            .map_err(|e| ResearchError::Fetch(e.to_string()))?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

fn map_err(e: ureq::Error) -> ResearchError {
    if let ureq::Error::Other(inner) = &e
        && let Some(r) = inner.downcast_ref::<nmk_kernel::research::SsrfRefusal>()
    {
        return ResearchError::Refused(*r);
    }
    ResearchError::Fetch(e.to_string())
}

impl Research for HttpResearch {
    fn name(&self) -> &str {
        "http"
    }

    fn search(&self, query: &str, limits: &ResearchLimits) -> Result<Vec<Document>, ResearchError> {
        let url = self.search_url.replace("{q}", &percent_encode(query));
        let page = self.fetch(&url, limits.max_response_bytes)?;
        let mut docs = Vec::new();
        for link in links(&page).into_iter().take(limits.max_results) {
            if docs.len() >= limits.max_documents {
                break;
            }
            // A refused or failing link is skipped; the others may still help.
            if let Ok(body) = self.fetch(&link, limits.max_response_bytes) {
                let text = cap(&html_to_text(&body), limits.max_doc_chars);
                if !text.is_empty() {
                    docs.push(Document { url: link, text });
                }
            }
        }
        if docs.is_empty() {
            let text = cap(&html_to_text(&page), limits.max_doc_chars);
            if !text.is_empty() {
                docs.push(Document { url, text });
            }
        }
        Ok(docs)
    }
}

fn cap(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// `application/x-www-form-urlencoded`-style encoding of a query.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Absolute http(s) links of a page (`href="…"`), in order, without duplicates.
pub fn links(page: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = page;
    while let Some(i) = rest.find("href=") {
        rest = &rest[i + 5..];
        let quote = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => continue,
        };
        let body = &rest[1..];
        let Some(end) = body.find(quote) else { break };
        let link = decode_entities(&body[..end]);
        rest = &body[end..];
        let lower = link.to_ascii_lowercase();
        if (lower.starts_with("http://") || lower.starts_with("https://")) && !out.contains(&link) {
            out.push(link);
        }
    }
    out
}

fn decode_entities(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
}

/// Plain text of an HTML page: scripts and styles dropped, tags removed, entities decoded,
/// whitespace collapsed. Plain text passes through (whitespace collapsed).
pub fn html_to_text(html: &str) -> String {
    let mut text = String::new();
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < html.len() {
        if bytes[i] == b'<' {
            let skip_to = ["script", "style"].iter().find_map(|t| {
                lower[i + 1..].starts_with(t).then(|| {
                    lower[i..]
                        .find(&format!("</{t}"))
                        .and_then(|j| lower[i + j..].find('>').map(|k| i + j + k + 1))
                        .unwrap_or(html.len())
                })
            });
            i = match skip_to {
                Some(j) => j,
                None => html[i..].find('>').map_or(html.len(), |j| i + j + 1),
            };
            text.push(' ');
        } else {
            let next = html[i..].find('<').map_or(html.len(), |j| i + j);
            text.push_str(&html[i..next]);
            i = next;
        }
    }
    decode_entities(&text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
