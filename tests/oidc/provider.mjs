// A real OpenID provider (the certified `oidc-provider` package) on 127.0.0.1, for the console's browser tests.
// Usage: node provider.mjs PORT CLIENT_ID REDIRECT_URI[,REDIRECT_URI...]
// Each console's {base}/signed-out (from its {base}/auth/callback) is registered as a post-logout redirect:
// the console's sign-out ends the provider session too (RP-initiated logout, end_session_endpoint).
// Sign-in is oidc-provider's development login form: any login name is accepted as the subject (the
// console's policy decides who that is). Consent is skipped (an existing grant for openid/profile/email).
import Provider from "oidc-provider";

const [port, clientId, redirectUris] = process.argv.slice(2);
if (!port || !clientId || !redirectUris) {
  console.error("usage: node provider.mjs PORT CLIENT_ID REDIRECT_URI[,REDIRECT_URI...]");
  process.exit(64);
}
const redirects = redirectUris.split(",");
const postLogout = redirects.map((uri) => uri.replace(/\/auth\/callback$/, "/signed-out"));

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    token_endpoint_auth_method: "none",          // a public client: PKCE is its proof
    redirect_uris: redirects,
    post_logout_redirect_uris: postLogout,
    response_types: ["code"],
    grant_types: ["authorization_code"],
  }],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // The default page imports a web font; this one asks the same question with nothing fetched from outside.
      async logoutSource(ctx, form) {
        ctx.body = `<!DOCTYPE html><html><head><title>Logout Request</title></head><body>
          <h1 id="op-logout">Do you want to sign-out from ${ctx.host}?</h1>${form}
          <button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
          <button type="submit" form="op.logoutForm">No, stay signed in</button></body></html>`;
      },
    },
  },
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
