"""Writes about members: each service runs in one transaction with its audit event.

Modules: registration (REG-1..5), verification (REG-6..8), profile (REG-8), status
(REG-9, REG-11), payment_methods (REG-10), consents (REG-5, PRIV-1, PRIV-9); sign-in, KYC,
reveal, QR sign-in and passwords live in their own modules beside these.
"""
