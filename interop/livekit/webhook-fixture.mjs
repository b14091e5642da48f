// Produces a LiveKit webhook request with LiveKit's own Node SDK, signed the way a LiveKit server
// signs it: the body is the event as protobuf JSON, and the `Authorization` header is an access
// token of the API key whose `sha256` claim is the base64 SHA-256 of the body. (The SDK's
// `WebhookReceiver` checks exactly that; this script checks its own output with it too.)
//
// stdin:  {"api_key": "...", "api_secret": "...", "event": {<WebhookEvent JSON>},
//          "wrong_secret": "..."}   (optional: sign with this secret instead, for a refusal test)
// stdout: {"body": "<request body>", "authorization": "<Authorization header value>"}
import { createHash } from 'node:crypto';

import { AccessToken, WebhookEvent, WebhookReceiver } from 'livekit-server-sdk';

import { readStdinJson } from './stdin.mjs';

const request = await readStdinJson();
const body = WebhookEvent.fromJson(request.event).toJsonString();
const signingSecret = request.wrong_secret ?? request.api_secret;
const token = new AccessToken(request.api_key, signingSecret, { ttl: '10m' });
token.sha256 = createHash('sha256').update(body, 'utf8').digest('base64');
const authorization = await token.toJwt();

// A correctly signed fixture must satisfy the SDK's own receiver, and a wrongly signed one must
// not; otherwise the fixture would test nothing.
const accepted = await new WebhookReceiver(request.api_key, request.api_secret)
  .receive(body, authorization)
  .then(() => true, () => false);
if (accepted !== (request.wrong_secret === undefined)) {
  process.stderr.write(`the SDK's WebhookReceiver ${accepted ? 'accepts' : 'refuses'} this fixture\n`);
  process.exit(1);
}
process.stdout.write(`${JSON.stringify({ body, authorization })}\n`);
