-- Listings are ordered by these keys. Under a language collation (en_US and the like)
-- PostgreSQL ignores punctuation at first and lists 'a_b' before 'a-c', while SQLite
-- compares bytes. "C" makes PostgreSQL compare bytes too, so both backends list alike
-- whatever collation the database was created with. Foreign keys and their referenced
-- keys change together, so each pair keeps comparing the same way.
ALTER TABLE pipelines DROP CONSTRAINT pipelines_application_key_fkey;
ALTER TABLE user_roles DROP CONSTRAINT user_roles_user_key_fkey;
ALTER TABLE user_roles DROP CONSTRAINT user_roles_role_fkey;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_user_key_fkey;

ALTER TABLE applications ALTER COLUMN name_key TYPE TEXT COLLATE "C";
ALTER TABLE pipelines ALTER COLUMN application_key TYPE TEXT COLLATE "C";
ALTER TABLE pipelines ALTER COLUMN name_key TYPE TEXT COLLATE "C";
ALTER TABLE users ALTER COLUMN name_key TYPE TEXT COLLATE "C";
ALTER TABLE roles ALTER COLUMN name TYPE TEXT COLLATE "C";
ALTER TABLE user_roles ALTER COLUMN user_key TYPE TEXT COLLATE "C";
ALTER TABLE user_roles ALTER COLUMN role TYPE TEXT COLLATE "C";
ALTER TABLE api_tokens ALTER COLUMN user_key TYPE TEXT COLLATE "C";
ALTER TABLE api_tokens ALTER COLUMN id TYPE TEXT COLLATE "C";

ALTER TABLE pipelines ADD CONSTRAINT pipelines_application_key_fkey
    FOREIGN KEY (application_key) REFERENCES applications (name_key);
ALTER TABLE user_roles ADD CONSTRAINT user_roles_user_key_fkey
    FOREIGN KEY (user_key) REFERENCES users (name_key) ON DELETE CASCADE;
ALTER TABLE user_roles ADD CONSTRAINT user_roles_role_fkey
    FOREIGN KEY (role) REFERENCES roles (name) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_user_key_fkey
    FOREIGN KEY (user_key) REFERENCES users (name_key) ON DELETE CASCADE;
