# The trusted-code prelude of gap files (nmk_det::gate::gapfile): a seeded SplitMix64 RNG.
# Prepended to a gap file's generator; `__nmk_generate_one(seed)` is the entry the host calls
# once per instance with a per-instance seed drawn from the host's own Rng.
__NMK_MASK = 18446744073709551615


class NmkRng:
    def __init__(self, seed):
        self.state = seed & __NMK_MASK

    def next_u64(self):
        self.state = (self.state + 11400714819323198485) & __NMK_MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 13787848793156543929) & __NMK_MASK
        z = ((z ^ (z >> 27)) * 10723151780598845931) & __NMK_MASK
        return z ^ (z >> 31)

    def below(self, n):
        if n <= 0:
            raise ValueError("below: n must be positive")
        words = 1
        limit = 18446744073709551616
        while limit < n:
            limit = limit * 18446744073709551616
            words += 1
        zone = limit - (limit % n)
        while True:
            r = 0
            for _ in range(words):
                r = (r << 64) | self.next_u64()
            if r < zone:
                return r % n

    def randint(self, a, b):
        if b < a:
            raise ValueError("randint: empty range")
        return a + self.below(b - a + 1)

    def randrange(self, start, stop=None, step=1):
        if stop is None:
            start, stop = 0, start
        if step <= 0:
            raise ValueError("randrange: step must be positive")
        count = (stop - start + step - 1) // step
        if count <= 0:
            raise ValueError("randrange: empty range")
        return start + step * self.below(count)

    def getrandbits(self, k):
        if k < 0:
            raise ValueError("getrandbits: negative bit count")
        r = 0
        got = 0
        while got < k:
            r = (r << 64) | self.next_u64()
            got += 64
        return r >> (got - k)

    def random(self):
        return (self.next_u64() >> 11) / 9007199254740992.0

    def uniform(self, a, b):
        return a + (b - a) * self.random()

    def coin(self):
        return self.next_u64() & 1 == 1

    def choice(self, seq):
        if len(seq) == 0:
            raise IndexError("choice: empty sequence")
        return seq[self.below(len(seq))]

    def choices(self, seq, k):
        return [self.choice(seq) for _ in range(k)]

    def shuffle(self, xs):
        i = len(xs) - 1
        while i > 0:
            j = self.below(i + 1)
            t = xs[i]
            xs[i] = xs[j]
            xs[j] = t
            i -= 1

    def sample(self, seq, k):
        pool = list(seq)
        if k < 0 or k > len(pool):
            raise ValueError("sample: k out of range")
        for i in range(k):
            j = i + self.below(len(pool) - i)
            t = pool[i]
            pool[i] = pool[j]
            pool[j] = t
        return pool[:k]
