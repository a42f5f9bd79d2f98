// A real OpenID provider (the certified `oidc-provider` package) on 127.0.0.1, for the console's browser tests.
// Usage: node provider.mjs PORT CLIENT_ID REDIRECT_URI
// Sign-in is oidc-provider's development login form: any login name is accepted as the subject (the
// console's policy decides who that is). Consent is skipped (an existing grant for openid/profile/email).
import Provider from "oidc-provider";

const [port, clientId, redirectUri] = process.argv.slice(2);
if (!port || !clientId || !redirectUri) {
  console.error("usage: node provider.mjs PORT CLIENT_ID REDIRECT_URI");
  process.exit(64);
}

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    token_endpoint_auth_method: "none",          // a public client: PKCE is its proof
    redirect_uris: [redirectUri],
    response_types: ["code"],
    grant_types: ["authorization_code"],
  }],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["lineage-guard-test-provider-cookies"] },
  claims: { openid: ["sub"], email: ["email", "email_verified"] },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return { sub: id, email: `${id}@example.test`, email_verified: true }; } };
  },
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope("openid profile email");
    await grant.save();
    return grant;
  },
});
provider.on("server_error", (ctx, err) => console.error("provider error:", err.message));
process.on("SIGTERM", () => process.exit(0));
provider.listen(Number(port), "127.0.0.1", () => console.log(`ready http://127.0.0.1:${port}`));
