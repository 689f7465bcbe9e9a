//! `shoal cluster …`: the cluster operations of the shell's dot commands, for scripts —
//! readable output for people, `--json` for programs, exit status 1 on failure.

use serde_json::{Value, json};

use crate::shell::client::Client;
use crate::shell::commands::{nodes_text, status_text};

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Shoal node(s) to ask, comma-separated; the next is used when one is unreachable.
    #[arg(
        long,
        env = "SHOAL_HOST",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:4001",
        global = true
    )]
    pub host: Vec<String>,
    /// Print the reply as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Authenticate as this user (password from SHOAL_PASSWORD) on a cluster running --auth.
    #[arg(long, global = true, env = "SHOAL_USER")]
    pub user: Option<String>,
    #[command(subcommand)]
    pub operation: Operation,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Operation {
    /// The leader, the term, and every member's role, health and lag.
    Status,
    /// The members and whether they are reachable.
    Nodes,
    /// The databases: their groups, replica counts and the nodes holding them.
    Databases,
    /// Add a node to the cluster (it must be running with the same node id).
    Join {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its Raft address (host:port).
        #[arg(long)]
        raft_addr: String,
        /// Its HTTP address (host:port).
        #[arg(long)]
        http_addr: Option<String>,
        /// Add it as a read replica (non-voting).
        #[arg(long)]
        non_voter: bool,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node's id.
        id: u64,
    },
    /// Move every database replica off node ID (then it can be removed).
    Drain {
        /// The node's id.
        id: u64,
    },
    /// Make the leader hand leadership to another up-to-date voter.
    StepDown,
    /// Make the leader hand leadership to node ID.
    Transfer {
        /// The voter to lead.
        id: u64,
    },
}

/// Runs one operation; returns the process exit status.
pub fn run(args: ClusterArgs) -> i32 {
    let credentials = crate::auth::cli::credentials(args.user.as_deref());
    let mut client = match Client::new(args.host.clone(), credentials) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("shoal cluster: {message}");
            return 2;
        }
    };
    let outcome = match &args.operation {
        Operation::Status => client.get("/status"),
        Operation::Nodes => client.get("/nodes"),
        Operation::Databases => client.post("/db/query", &json!(["SHOW DATABASES"])),
        Operation::Join {
            id,
            raft_addr,
            http_addr,
            non_voter,
        } => client.post(
            "/join",
            &json!({"id": id, "addr": raft_addr, "http_addr": http_addr, "voter": !non_voter}),
        ),
        Operation::Remove { id } => client.post("/remove", &json!({"id": id})),
        Operation::Drain { id } => client.post("/drain", &json!({"id": id})),
        Operation::StepDown => client.post("/leader", &json!({})),
        Operation::Transfer { id } => client.post("/leader", &json!({"id": id})),
    };
    match outcome {
        Ok(reply) => {
            println!("{}", render(&args, &reply, client.host()));
            0
        }
        Err(failure) => {
            eprintln!("shoal cluster: {failure}");
            1
        }
    }
}

/// `SHOW DATABASES` as a table.
fn databases_text(reply: &Value) -> String {
    let (columns, rows) =
        crate::shell::render::result_rows(&reply["results"][0]).unwrap_or_default();
    crate::shell::render::render(crate::shell::render::Mode::Table, &columns, &rows)
        .trim_end()
        .to_string()
}

fn render(args: &ClusterArgs, reply: &Value, host: &str) -> String {
    if args.json {
        return serde_json::to_string_pretty(reply).unwrap_or_else(|_| reply.to_string());
    }
    match &args.operation {
        Operation::Status => status_text(reply, host).trim_end().to_string(),
        Operation::Nodes => nodes_text(reply).trim_end().to_string(),
        Operation::Databases => databases_text(reply),
        Operation::StepDown | Operation::Transfer { .. } => match reply["leader"].as_u64() {
            Some(leader) => format!("node {leader} leads"),
            None => reply.to_string(),
        },
        Operation::Join { id, .. } => format!("node {id} joined"),
        Operation::Remove { id } => format!("node {id} removed"),
        Operation::Drain { id } => format!(
            "node {id} draining: {} replicas still placed on it (remove it once none are)",
            reply["replicas_placed"]
        ),
    }
}
