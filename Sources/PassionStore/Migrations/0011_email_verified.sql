-- 0011_email_verified: an account knows whether its email was vouched for, and only a vouched
-- email is unique.
--
-- Sign-in links a new identity to an existing account by email. That is safe only when the
-- identity provider vouches that the user controls the address; otherwise anyone can type a
-- victim's address into an account at a provider that does not verify it (Microsoft says its
-- `email` claim is unverified) and take over or squat the victim's account. An unverified email
-- is kept as profile data, but it links nothing and holds no place in the unique index, so it
-- cannot keep the address's real owner out.
--
-- Existing accounts count as verified: they were made by a gateway that vouched for the
-- identity, or by an operator. Rows inserted without the column (operators, bulk loads) too.

ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT true;

DROP INDEX users_email_key;
CREATE UNIQUE INDEX users_email_key ON users (email) WHERE deleted_at IS NULL AND email_verified;
