//! The authorization matrix of docs/PROTOCOL.md ("Who may read a channel"), cell by cell: the
//! table is read from the document, every cell is acted out by its role against the private
//! channel `club` (or, for the DM third party, a direct-message channel), on one instance or
//! the other, and what happened must be what the cell says.

use std::collections::HashMap;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

const COLUMNS: [&str; 8] = [
    "member",
    "non-member",
    "removed member",
    "banned user",
    "guest",
    "DM third party",
    "channel owner",
    "administrator",
];

const PASSWORD: &str = "club-password";

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().trim_matches('`').to_owned())
        .collect()
}

/// The matrix as PROTOCOL.md writes it: each row's name and its cells, by column.
fn matrix() -> Vec<(String, Vec<String>)> {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let start = doc
        .find("### Authorization matrix")
        .expect("the matrix in PROTOCOL.md");
    let mut lines = doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| route or event |"));
    let header = cells(lines.next().expect("the matrix header"));
    assert_eq!(header[1..], COLUMNS, "the matrix's columns");
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let mut row = cells(l);
            let name = row.remove(0);
            assert_eq!(row.len(), COLUMNS.len(), "{name}: one cell per column");
            (name, row)
        })
        .collect()
}

/// Everything the cells act on.
struct World {
    cluster: Cluster,
    users: HashMap<&'static str, User>,
    /// The direct-message channel of `mem` and `pal`.
    dm: String,
    /// A picture in `club`, and one in the direct messages.
    club_file: String,
    dm_file: String,
    /// A message of `mem` in `club`, and one in the direct messages.
    club_message: Value,
    dm_message: Value,
    /// Each role's signed upload URL, announced before any ban.
    announced: HashMap<&'static str, String>,
    /// Whether each role was told of the messages that named everyone.
    told: HashMap<&'static str, bool>,
}

/// The user acting in a column, and the conversation it acts on.
fn actor(column: &str) -> &'static str {
    match column {
        "member" => "mem",
        "non-member" => "out",
        "removed member" => "gone",
        "banned user" => "bad",
        "guest" => "gst",
        "DM third party" => "third",
        "channel owner" => "owner",
        "administrator" => "adm",
        other => panic!("unknown column {other}"),
    }
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

async fn sent(client: &Client, channel: &str, text: &str, file: Option<&str>) -> Value {
    let mut payload =
        json!({"channel": channel, "text": text, "client_message_id": Uuid::new_v4()});
    if let Some(url) = file {
        payload["file"] = json!({"url": url, "name": "file", "type": "image/png"});
    }
    let ack = client.ack("message.send", payload).await;
    assert_eq!(ack["ok"], true, "{ack}");
    ack["message"].clone()
}

async fn joined(client: &Client, channel: &str, password: Option<&str>) {
    let ack = client
        .ack(
            "channel.join",
            json!({"channel": channel, "password": password}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

impl World {
    async fn build() -> World {
        let cluster = Cluster::start(&["--admin-users", "adm"]).await;
        let a = cluster.a();
        let mut users = HashMap::new();
        for name in [
            "owner", "mem", "out", "gone", "bad", "third", "adm", "pal", "cmem",
        ] {
            users.insert(name, cluster.register(a, name).await);
        }
        users.insert("gst", cluster.guest("gst").await);
        let (status, _) = cluster
            .post(
                a,
                "/api/channels",
                &users["owner"],
                json!({"name": "club", "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 201);
        // Members: mem, cm, gone and bad (the last two lose it below), and the victims the
        // removal row removes.
        let mut sockets = HashMap::new();
        for name in ["owner", "mem", "cmem", "gone", "bad"] {
            let client = Client::connect(a, &users[name]).await;
            joined(&client, "club", Some(PASSWORD)).await;
            sockets.insert(name, client);
        }
        for column in COLUMNS {
            let victim = cluster.guest(&format!("victim-{}", actor(column))).await;
            let client = Client::connect(a, &victim).await;
            joined(&client, "club", Some(PASSWORD)).await;
            client.disconnect().await;
        }
        let (status, opened) = cluster
            .post(a, "/api/dms", &users["mem"], json!({"username": "pal"}))
            .await;
        assert_eq!(status, 200, "{opened}");
        let dm = opened["channel"]["name"].as_str().expect("dm").to_owned();

        let (_, club_upload) =
            multipart(&cluster, a, &users["mem"], "p.png", "image/png", png()).await;
        let (_, dm_upload) =
            multipart(&cluster, a, &users["mem"], "p.png", "image/png", png()).await;
        let club_file = club_upload["url"].as_str().expect("url").to_owned();
        let dm_file = dm_upload["url"].as_str().expect("url").to_owned();
        let mem = &sockets["mem"];
        let club_message = sent(mem, "club", "in the club", Some(&club_file)).await;
        let dm_client = Client::connect(a, &users["mem"]).await;
        joined(&dm_client, &dm, None).await;
        let dm_message = sent(&dm_client, &dm, "between us", Some(&dm_file)).await;
        dm_client.disconnect().await;

        // Every role announces an upload now; the banned user's URL is revoked by the ban.
        let mut announced = HashMap::new();
        for column in COLUMNS {
            let name = actor(column);
            let (status, ticket) = cluster
                .post(
                    a,
                    "/api/uploads",
                    &users[name],
                    json!({"name": "a.txt", "type": "text/plain", "size": 5}),
                )
                .await;
            assert_eq!(status, 201, "{ticket}");
            announced.insert(
                name,
                ticket["upload"]["url"].as_str().expect("url").to_owned(),
            );
        }

        // The removed member and the banned user.
        let (status, _) = cluster
            .call(
                reqwest::Method::DELETE,
                a,
                "/api/channels/club/members/gone",
                &users["owner"],
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (status, _) = cluster
            .call(
                reqwest::Method::POST,
                a,
                "/api/admin/users/bad/ban",
                &users["adm"],
                None,
            )
            .await;
        assert_eq!(status, 200);

        // Messages that name everyone: in the club (by another member) and in the direct
        // messages (by mem, naming the third party too).
        let mut listeners = HashMap::new();
        for column in COLUMNS {
            let name = actor(column);
            if name == "bad" {
                continue;
            }
            let on = if listeners.len() % 2 == 0 {
                cluster.a()
            } else {
                cluster.b()
            };
            listeners.insert(name, Client::connect(on, &users[name]).await);
        }
        let everyone = "@mem @out @gone @gst @third @owner @adm @bad";
        sent(&sockets["cmem"], "club", everyone, None).await;
        let dm_client = Client::connect(a, &users["mem"]).await;
        joined(&dm_client, &dm, None).await;
        sent(&dm_client, &dm, everyone, None).await;
        settle().await;
        let mut told = HashMap::new();
        for (name, client) in listeners {
            // The DM third party's cell is about the direct messages; every other about club.
            let conversation = if name == "third" {
                dm.clone()
            } else {
                "club".to_owned()
            };
            let was = client
                .events("mention")
                .iter()
                .any(|m| m["channel"] == conversation.as_str());
            told.insert(name, was);
            client.disconnect().await;
        }
        dm_client.disconnect().await;
        for (_, client) in sockets {
            client.disconnect().await;
        }
        World {
            cluster,
            users,
            dm,
            club_file,
            dm_file,
            club_message,
            dm_message,
            announced,
            told,
        }
    }

    /// What happened when `column`'s role did what `row` names, on `on`.
    async fn act(&self, row: &str, column: &str, on: &Instance) -> String {
        let name = actor(column);
        let user = &self.users[name];
        let dm = name == "third";
        let conversation = if dm {
            self.dm.clone()
        } else {
            "club".to_owned()
        };
        let file = if dm { &self.dm_file } else { &self.club_file };
        let cluster = &self.cluster;
        let status = |s: u16| s.to_string();
        let get = |path: String| async move { cluster.get(on, &path, user).await };
        match row {
            "GET /api/auth/me" => status(get("/api/auth/me".into()).await.0),
            "GET /api/channels" => {
                let (s, list) = get("/api/channels?limit=100".into()).await;
                if s != 200 {
                    return status(s);
                }
                let entry = list.as_array().and_then(|l| {
                    l.iter()
                        .find(|c| c["name"] == conversation.as_str())
                        .cloned()
                });
                shown(entry.is_some_and(|c| c.get("unread").is_some()))
            }
            "POST /api/channels" => {
                let body = json!({"name": format!("made-by-{name}")});
                status(cluster.post(on, "/api/channels", user, body).await.0)
            }
            "PATCH /api/channels/:name" => {
                let body = json!({"retention_max_messages": 1000});
                let path = format!("/api/channels/{conversation}");
                status(
                    cluster
                        .call(reqwest::Method::PATCH, on, &path, user, Some(body))
                        .await
                        .0,
                )
            }
            "GET /api/channels/:name/messages" => status(
                get(format!("/api/channels/{conversation}/messages"))
                    .await
                    .0,
            ),
            "DELETE /api/channels/:name/members/:user" => {
                let victim = if dm {
                    "pal".to_owned()
                } else {
                    format!("victim-{name}")
                };
                let path = format!("/api/channels/{conversation}/members/{victim}");
                status(
                    cluster
                        .call(reqwest::Method::DELETE, on, &path, user, None)
                        .await
                        .0,
                )
            }
            "GET /api/presence/online?channel=" => status(
                get(format!("/api/presence/online?channel={conversation}"))
                    .await
                    .0,
            ),
            "GET /api/dms" => {
                let (s, list) = get("/api/dms".into()).await;
                if s != 200 {
                    return status(s);
                }
                shown(list.to_string().contains(&self.dm))
            }
            "POST /api/dms" => {
                let body = json!({"username": "pal"});
                status(cluster.post(on, "/api/dms", user, body).await.0)
            }
            "GET /api/users/:name" => status(get("/api/users/pal".into()).await.0),
            "POST /api/admin/users/:name/ban" | "DELETE /api/admin/users/:name/ban" => {
                let target = format!("target-{name}");
                if cluster
                    .get(on, &format!("/api/users/{target}"), &self.users["adm"])
                    .await
                    .0
                    == 404
                {
                    cluster.guest(&target).await;
                }
                let method = if row.starts_with("POST") {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::DELETE
                };
                let path = format!("/api/admin/users/{target}/ban");
                status(cluster.call(method, on, &path, user, None).await.0)
            }
            "GET /api/admin/moderation-log" => {
                status(get("/api/admin/moderation-log".into()).await.0)
            }
            "GET /api/admin/cluster" => status(get("/api/admin/cluster".into()).await.0),
            "POST /api/admin/instances/:id/drain" | "DELETE /api/admin/instances/:id/drain" => {
                // The instance acted on is the one asked; a drain is called off at once (it
                // moves nothing for DRAIN_GRACE_SECS), so the other cells keep their instance.
                let (_, view) = cluster
                    .get(on, "/api/admin/cluster", &self.users["adm"])
                    .await;
                let id = view["answered_by"].as_str().unwrap_or_default().to_owned();
                let path = format!("/api/admin/instances/{id}/drain");
                let method = if row.starts_with("POST") {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::DELETE
                };
                let answer = cluster.call(method, on, &path, user, None).await.0;
                cluster
                    .call(reqwest::Method::DELETE, on, &path, &self.users["adm"], None)
                    .await;
                status(answer)
            }
            "POST /api/uploads" => {
                let body = json!({"name": "b.txt", "type": "text/plain", "size": 5});
                status(cluster.post(on, "/api/uploads", user, body).await.0)
            }
            "PUT /api/uploads/:key" => {
                let resp = cluster
                    .http
                    .put(format!("{}{}", on.url(), self.announced[name]))
                    .header("content-type", "text/plain")
                    .body(b"12345".to_vec())
                    .send()
                    .await
                    .expect("put");
                status(resp.status().as_u16())
            }
            "POST /api/upload/upload" => status(
                multipart(cluster, on, user, "h.txt", "text/plain", b"hello".to_vec())
                    .await
                    .0,
            ),
            "GET /uploads/:key" => status(get(file.clone()).await.0),
            "GET /uploads/:key/thumbnail" => status(get(format!("{file}/thumbnail")).await.0),
            "mention" => {
                if name == "bad" {
                    return self.refused_handshake(on, user).await;
                }
                if self.told[name] { "told" } else { "not told" }.to_owned()
            }
            event => self.event(event, name, &conversation, on).await,
        }
    }

    /// The socket's answer to `event`, after it tried to join the conversation.
    async fn event(&self, event: &str, name: &str, conversation: &str, on: &Instance) -> String {
        let user = &self.users[name];
        let client = match Client::handshake(on, Hello::cookie(user)).await {
            Handshake::Connected(client) => client,
            Handshake::Refused(_) => return "refused".to_owned(),
        };
        let join = client.ack("channel.join", json!(conversation)).await;
        let message = if conversation == "club" {
            &self.club_message
        } else {
            &self.dm_message
        };
        let id = message["id"].clone();
        let ack = match event {
            "channel.join" => join,
            "channel.leave" => client.ack("channel.leave", json!(conversation)).await,
            "message.send" => {
                client
                    .ack("message.send", json!({"channel": conversation, "text": "hi", "client_message_id": Uuid::new_v4()}))
                    .await
            }
            "user.typing" => {
                client
                    .ack("user.typing", json!({"channel": conversation, "isTyping": true}))
                    .await
            }
            "messages.sync" => {
                client
                    .ack("messages.sync", json!({"channel": conversation, "after_seq": 0}))
                    .await
            }
            "message.edit" => {
                client
                    .ack("message.edit", json!({"channel": conversation, "id": id, "text": "edited"}))
                    .await
            }
            "message.delete" => {
                // A fresh message of the member's, so that every cell has one to delete.
                let author = Client::connect(on, &self.users["mem"]).await;
                author.ack("channel.join", json!(conversation)).await;
                let fresh = sent(&author, conversation, "to delete", None).await;
                author.disconnect().await;
                client
                    .ack("message.delete", json!({"channel": conversation, "id": fresh["id"]}))
                    .await
            }
            "reaction.add" | "reaction.remove" => {
                client
                    .ack(event, json!({"channel": conversation, "id": id, "emoji": "👍"}))
                    .await
            }
            "channel.read" => {
                client
                    .ack("channel.read", json!({"channel": conversation, "seq": 1}))
                    .await
            }
            other => panic!("no way to act out the matrix row {other:?}"),
        };
        client.disconnect().await;
        if ack["ok"] == true {
            "ok".to_owned()
        } else {
            ack["error"]["code"]
                .as_str()
                .unwrap_or("no code")
                .to_owned()
        }
    }

    async fn refused_handshake(&self, on: &Instance, user: &User) -> String {
        match Client::handshake(on, Hello::cookie(user)).await {
            Handshake::Connected(client) => {
                client.disconnect().await;
                "connected".to_owned()
            }
            Handshake::Refused(_) => "refused".to_owned(),
        }
    }
}

fn shown(yes: bool) -> String {
    if yes { "shown" } else { "hidden" }.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_the_authorization_matrix_holds_on_two_instances() {
    let world = World::build().await;
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (r, (row, cells)) in matrix().iter().enumerate() {
        for (c, (column, expected)) in COLUMNS.iter().zip(cells).enumerate() {
            let on = if (r + c) % 2 == 0 {
                world.cluster.a()
            } else {
                world.cluster.b()
            };
            let got = world.act(row, column, on).await;
            checked += 1;
            if &got != expected {
                wrong.push(format!(
                    "{row} / {column}: the matrix says {expected}, got {got}"
                ));
            }
        }
    }
    assert!(checked >= 200, "{checked} cells");
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    world.cluster.finish().await;
}
