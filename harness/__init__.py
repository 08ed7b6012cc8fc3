"""The test and load harness: simulated callers (FastAGI), an SMSC and an AMI server.

The simulators speak the channels' wire protocols from the outside; they depend on the
channels' wire code (``sms.pdu``, ``sms.encoding``...), never the other way round.
"""
