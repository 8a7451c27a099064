"""The simulated I2C controllers: each transfer is answered by the model at that bus and address.

A missing or failed device raises OSError(19) (ENODEV), a short answer
OSError(110) (ETIMEDOUT), as on a board.
"""
from firmware.sim import bus

_ENODEV = 19  # errno: no device answered its address
_ETIMEDOUT = 110  # errno: the bus timed out


def _buffer(data, n):
    """A model's answer checked to be n bytes: a short answer is a bus timeout."""
    if data is None or len(data) < n:
        raise OSError(_ETIMEDOUT)
    return data[:n]


class I2C:
    """An I2C controller; `id` names the bus the models were attached to."""

    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        self.id = id
        self.freq = freq
        self.timeout = timeout

    def _device(self, addr):
        model = bus.i2c_device(self.id, addr)
        if model is None or bus.dead(model):
            raise OSError(_ENODEV)
        return model

    def scan(self):
        found = []
        for addr in bus.i2c_scan(self.id):
            if not bus.dead(bus.i2c_device(self.id, addr)):
                found.append(addr)
        return found

    def writeto(self, addr, buf, stop=True):
        self._device(addr).write(bytes(buf))
        return len(buf)

    def readfrom(self, addr, nbytes, stop=True):
        return bytes(_buffer(self._device(addr).read(nbytes), nbytes))

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = _buffer(self._device(addr).read(len(buf)), len(buf))

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._device(addr).write(bytes((memaddr,)) + bytes(buf))

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        model = self._device(addr)
        model.write(bytes((memaddr,)))
        return bytes(_buffer(model.read(nbytes), nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        model = self._device(addr)
        model.write(bytes((memaddr,)))
        buf[:] = _buffer(model.read(len(buf)), len(buf))


class SoftI2C(I2C):
    """A bit-banged I2C on two Pins; its bus id is the pair of pin ids."""

    def __init__(self, scl, sda, freq=400000, timeout=50000):
        I2C.__init__(self, (scl.id, sda.id), scl, sda, freq, timeout)
