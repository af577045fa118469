"""Signs a body as Stripe signs its webhooks, with the official `stripe`
package, and checks the header with that package's own verification before
printing it (without its timestamp tolerance: stale headers are made on
purpose).

Usage: python stripe_sign.py SECRET TIMESTAMP < BODY
"""

import sys

import stripe

secret, timestamp = sys.argv[1], int(sys.argv[2])
payload = sys.stdin.buffer.read().decode("utf-8")
signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload}", secret)
header = f"t={timestamp},{stripe.WebhookSignature.EXPECTED_SCHEME}={signature}"
stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
print(header)
