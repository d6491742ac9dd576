//! A private redis-server for one test: its own port and configuration, so tests that change
//! `maxmemory` or flush keys never touch the machine's shared Redis or each other.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use marketplace_operator::cache::{Auth, Local};

pub struct RedisServer {
    pub port: u16,
    pub password: Option<String>,
    child: Child,
}

impl RedisServer {
    /// Starts `redis-server` on a free port, with `requirepass` when a password is given.
    pub async fn start(password: Option<&str>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        let server = Self {
            port,
            password: password.map(str::to_owned),
            child,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not listen on {port} within 5 s");
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// A resolver that sends every tier here, authenticating as the tier would.
    pub fn resolver(&self, auth: Auth) -> Local {
        Local {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            auth,
        }
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the test reaches its redis-server")
    }

    /// Stops the server as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
