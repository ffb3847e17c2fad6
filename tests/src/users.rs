//! Generated users: the node's users file and SIPp injection files.

use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

/// `count` users `user0000`, `user0001`, ... of one domain, each with its own password.
#[derive(Debug, Clone)]
pub struct TestUsers {
    pub domain: String,
    pub users: Vec<(String, String)>,
}

impl TestUsers {
    pub fn generate(count: usize, domain: &str) -> TestUsers {
        let users = (0..count)
            .map(|i| (format!("user{i:04}"), format!("pw-{i}-{:x}", i * 7919 + 17)))
            .collect();
        TestUsers {
            domain: domain.to_string(),
            users,
        }
    }

    /// The node's `--users` file: one `[[user]]` table per user.
    pub fn write_users_toml(&self, path: &Path) -> Result<()> {
        let mut text = String::new();
        for (username, password) in &self.users {
            let _ = write!(
                text,
                "[[user]]\nusername = \"{username}\"\ndomain = \"{}\"\npassword = \"{password}\"\n\n",
                self.domain
            );
        }
        std::fs::write(path, text)?;
        Ok(())
    }

    /// A SIPp injection file for `register_auth.xml` / `register_wrong_password.xml`:
    /// `user;[authentication username=user password=...]`, with the real password or,
    /// when `wrong`, a different one.
    pub fn write_auth_csv(&self, path: &Path, wrong: bool) -> Result<()> {
        let mut text = String::from("SEQUENTIAL\n");
        for (username, password) in &self.users {
            let password = if wrong {
                format!("{password}-wrong")
            } else {
                password.clone()
            };
            let _ = writeln!(
                text,
                "{username};[authentication username={username} password={password}]"
            );
        }
        std::fs::write(path, text)?;
        Ok(())
    }

    /// A SIPp injection file of user names only (`register_open.xml`).
    pub fn write_names_csv(&self, path: &Path) -> Result<()> {
        let mut text = String::from("SEQUENTIAL\n");
        for (username, _) in &self.users {
            let _ = writeln!(text, "{username}");
        }
        std::fs::write(path, text)?;
        Ok(())
    }
}
