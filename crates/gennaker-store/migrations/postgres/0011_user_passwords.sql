-- Users may have a password for the web UI's sign-in: a PHC string (Argon2id with its
-- own salt and parameters), never the password itself. NULL: no password, sign in with
-- an API token only.
ALTER TABLE users ADD COLUMN password_hash TEXT;
