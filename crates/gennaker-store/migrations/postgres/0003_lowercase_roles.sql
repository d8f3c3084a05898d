-- Role names ignore case and are stored lower-case, as Fiat does. Roles that differ only
-- in case merge into their lower-case spelling; every user keeps their grants.
INSERT INTO roles (name, description, created_at)
SELECT lower(name), MIN(description), MIN(created_at) FROM roles
WHERE lower(name) NOT IN (SELECT name FROM roles)
GROUP BY lower(name);

INSERT INTO user_roles (user_key, role)
SELECT user_key, lower(role) FROM user_roles WHERE role <> lower(role)
ON CONFLICT DO NOTHING;

-- Removes the mixed-case spellings and, by cascade, their old grants.
DELETE FROM roles WHERE name <> lower(name);
