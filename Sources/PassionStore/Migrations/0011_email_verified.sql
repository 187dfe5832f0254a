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
-- Existing accounts count as verified (they were made by a gateway that vouched for the
-- identity, an operator, or a Google token, which carries email_verified), except those that
-- sign in with Microsoft: until now a token without email_verified counted as verified, and
-- Microsoft never sends it, so an Azure account may hold an address it never proved. Such an
-- address stops blocking its real owner; the account still signs in by its identity and
-- becomes verified at a sign-in whose token carries xms_edov. Operators should review the
-- `user.signin` audit rows with provider azure and created false (links made by email).
-- Rows written without the column (operators, bulk loads) are vouched for by whoever writes them.

ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT true;
UPDATE users SET email_verified = false WHERE oauth_provider = 'azure';

DROP INDEX users_email_key;
CREATE UNIQUE INDEX users_email_key ON users (email) WHERE deleted_at IS NULL AND email_verified;
