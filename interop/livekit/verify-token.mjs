// Verifies a LiveKit access token with LiveKit's own Node SDK (`TokenVerifier`), as a LiveKit
// server would before letting a participant in.
//
// stdin:  {"api_key": "...", "api_secret": "...", "token": "<JWT>"}
// stdout: the verified claims as JSON (iss, sub, nbf, exp, video grants, ...)
// exit:   0 when the token verifies; 1 (with the reason on stderr) when it does not.
import { TokenVerifier } from 'livekit-server-sdk';

import { readStdinJson } from './stdin.mjs';

const request = await readStdinJson();
try {
  const claims = await new TokenVerifier(request.api_key, request.api_secret).verify(request.token);
  process.stdout.write(`${JSON.stringify(claims)}\n`);
} catch (error) {
  process.stderr.write(`token refused: ${error.message}\n`);
  process.exit(1);
}
