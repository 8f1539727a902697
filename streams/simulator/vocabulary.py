"""The simulated shop's taxonomy and words: real English, so models learn something meaningful.

``TAXONOMY`` is top-level category -> subcategory -> (brands, leaves); each leaf (the third path
segment) is ``(nouns, adjectives, modifiers)``, every list ``|``-separated. A product of a leaf is
``brand + adjective + noun [+ modifier]``; query texts are combinations of the same words.

``AMBIGUOUS`` are words shoppers type meaning products of different top-level categories
("apple": fruit or a phone); each maps to the leaf paths it may mean.
"""

from dataclasses import dataclass

Spec = tuple[str, str, str]  # nouns, adjectives, modifiers

TAXONOMY: dict[str, dict[str, tuple[str, dict[str, Spec]]]] = {
    "electronics": {
        "phones": (
            "Apple|Samsung|Google|Motorola|OnePlus|Nokia",
            {
                "smartphones": (
                    "smartphone|cell phone|unlocked phone",
                    "5g|refurbished|dual sim|budget|flagship",
                    "128gb|with good camera|for seniors|256gb",
                ),
                "phone-cases": (
                    "phone case|iphone case|protective case",
                    "clear|rugged|leather|slim|magnetic",
                    "with card holder|for iphone 15|for galaxy s24|shockproof",
                ),
                "chargers": (
                    "phone charger|usb c charger|wireless charger",
                    "fast|20w|dual port|magnetic|portable",
                    "for iphone|for samsung|with cable|2 pack",
                ),
            },
        ),
        "audio": (
            "Sony|Bose|JBL|Sennheiser|Anker|Beats",
            {
                "headphones": (
                    "headphones|over ear headphones|headset",
                    "wireless|noise cancelling|bluetooth|studio|gaming",
                    "with mic|for kids|for travel|under 100",
                ),
                "earbuds": (
                    "earbuds|wireless earbuds|in ear headphones",
                    "bluetooth|waterproof|sport|noise cancelling|true wireless",
                    "for running|with charging case|for small ears|for iphone",
                ),
                "speakers": (
                    "bluetooth speaker|portable speaker|smart speaker",
                    "waterproof|outdoor|mini|loud|rechargeable",
                    "for shower|with alexa|for party|with bass",
                ),
            },
        ),
        "computers": (
            "Dell|HP|Lenovo|Logitech|Asus|Acer",
            {
                "laptops": (
                    "laptop|notebook computer|chromebook",
                    "gaming|lightweight|2 in 1|touchscreen|refurbished",
                    "16gb ram|for students|with ssd|15 inch",
                ),
                "mice": (
                    "computer mouse|wireless mouse|trackball",
                    "ergonomic|silent|rechargeable|vertical|bluetooth",
                    "for laptop|for mac|for small hands|with usb receiver",
                ),
                "monitors": (
                    "computer monitor|gaming monitor|4k monitor",
                    "curved|27 inch|ultrawide|portable|144hz",
                    "with speakers|for macbook|with hdmi|for office",
                ),
            },
        ),
    },
    "fashion": {
        "shoes": (
            "Nike|Adidas|New Balance|Skechers|Brooks|Asics",
            {
                "running": (
                    "running shoes|trainers|jogging shoes",
                    "lightweight|cushioned|trail|wide|breathable",
                    "for men|for women|for flat feet|size 10",
                ),
                "boots": (
                    "boots|ankle boots|hiking boots",
                    "waterproof|leather|chelsea|winter|steel toe",
                    "for men|for women|for kids|size 9",
                ),
                "sandals": (
                    "sandals|flip flops|slides",
                    "comfortable|arch support|leather|platform|beach",
                    "for women|for men|for kids|size 8",
                ),
            },
        ),
        "clothing": (
            "Levi's|Uniqlo|H&M|Patagonia|Champion|Hanes",
            {
                "jeans": (
                    "jeans|denim jeans|denim pants",
                    "slim fit|high waisted|straight leg|bootcut|ripped",
                    "for men|for women|32x32|stretch",
                ),
                "jackets": (
                    "jacket|winter coat|rain jacket",
                    "puffer|waterproof|fleece|lightweight|hooded",
                    "for men|for women|for kids|packable",
                ),
                "t-shirts": (
                    "t shirt|tee|graphic tee",
                    "cotton|v neck|oversized|plain|crew neck",
                    "for men|for women|3 pack|white",
                ),
            },
        ),
        "accessories": (
            "Fossil|Ray-Ban|Pandora|Michael Kors|Casio|Oakley",
            {
                "watches": (
                    "wristwatch|analog watch|dress watch",
                    "digital|waterproof|leather strap|gold|chronograph",
                    "for men|for women|for kids|with date",
                ),
                "sunglasses": (
                    "sunglasses|sun glasses|eyewear",
                    "polarized|aviator|retro|oversized|sport",
                    "for men|for women|uv400|for driving",
                ),
                "jewelry": (
                    "necklace|earrings|bracelet",
                    "sterling silver|gold plated|pearl|minimalist|charm",
                    "for women|for girls|for mom|gift box",
                ),
            },
        ),
    },
    "home": {
        "kitchen": (
            "Lodge|KitchenAid|Cuisinart|OXO|Instant Pot|Ninja",
            {
                "cookware": (
                    "cast iron skillet|frying pan|dutch oven",
                    "nonstick|pre seasoned|stainless steel|ceramic|12 inch",
                    "with lid|for induction|oven safe|set",
                ),
                "appliances": (
                    "air fryer|blender|coffee maker",
                    "compact|digital|programmable|stainless|large",
                    "for family|6 quart|with grinder|for smoothies",
                ),
                "utensils": (
                    "knife set|cutting board|spatula",
                    "wooden|silicone|bamboo|professional|heat resistant",
                    "with block|set of 3|dishwasher safe|for kitchen",
                ),
            },
        ),
        "bedding": (
            "Casper|Brooklinen|Tempur-Pedic|Mellanni|Utopia Bedding|Linenspa",
            {
                "sheets": (
                    "bed sheets|sheet set|fitted sheet",
                    "cotton|queen|king|bamboo|flannel",
                    "deep pocket|1000 thread count|for twin bed|cooling",
                ),
                "pillows": (
                    "pillow|bed pillow|memory foam pillow",
                    "cooling|firm|down alternative|orthopedic|hypoallergenic",
                    "for side sleepers|for neck pain|2 pack|queen size",
                ),
                "mattresses": (
                    "mattress|mattress topper|foam mattress",
                    "memory foam|hybrid|firm|queen|gel infused",
                    "in a box|for back pain|12 inch|twin size",
                ),
            },
        ),
        "decor": (
            "IKEA|Umbra|mDesign|Yankee Candle|Nourison|Safavieh",
            {
                "lighting": (
                    "table lamp|floor lamp|led bulbs",
                    "dimmable|modern|smart|vintage|rechargeable",
                    "for living room|for bedroom|with usb port|3 pack",
                ),
                "rugs": (
                    "area rug|runner rug|doormat",
                    "washable|shag|vintage|outdoor|non slip",
                    "8x10|for living room|for kitchen|5x7",
                ),
                "candles": (
                    "candle|scented candle|candle set",
                    "soy|lavender|vanilla|large|unscented",
                    "gift set|for home|3 wick|in jar",
                ),
            },
        ),
    },
    "grocery": {
        "produce": (
            "Dole|Chiquita|Driscoll's|Sunkist|Del Monte|Organic Girl",
            {
                "fruit": (
                    "bananas|strawberries|avocados",
                    "organic|fresh|ripe|frozen|seedless",
                    "1 lb|family pack|bulk|6 count",
                ),
                "vegetables": (
                    "baby spinach|carrots|broccoli",
                    "organic|fresh|frozen|baby|chopped",
                    "1 lb bag|family size|bulk|pre washed",
                ),
            },
        ),
        "pantry": (
            "Barilla|Kellogg's|Quaker|Heinz|Campbell's|Nature Valley",
            {
                "pasta": (
                    "pasta|spaghetti|penne",
                    "whole wheat|gluten free|organic|protein|egg",
                    "1 lb|6 pack|bulk|family size",
                ),
                "cereal": (
                    "cereal|oatmeal|granola",
                    "high fiber|honey|low sugar|organic|gluten free",
                    "family size|for kids|2 pack|variety pack",
                ),
                "snacks": (
                    "potato chips|granola bars|mixed nuts",
                    "healthy|salted|unsalted|protein|keto",
                    "variety pack|snack size|24 count|bulk",
                ),
            },
        ),
        "beverages": (
            "Starbucks|Lipton|Folgers|Twinings|Tropicana|Peet's",
            {
                "coffee": (
                    "coffee beans|ground coffee|coffee pods",
                    "dark roast|decaf|medium roast|organic|espresso",
                    "2 lb|for keurig|whole bean|100 count",
                ),
                "tea": (
                    "green tea|tea bags|black tea",
                    "herbal|organic|decaf|chamomile|matcha",
                    "100 count|loose leaf|variety pack|caffeine free",
                ),
                "juice": (
                    "orange juice|lemonade|sparkling water",
                    "fresh squeezed|no pulp|organic|unsweetened|flavored",
                    "12 pack|52 oz|family size|cans",
                ),
            },
        ),
    },
    "sports": {
        "fitness": (
            "Bowflex|CAP Barbell|Gaiam|Fitbit|Garmin|Amazon Basics",
            {
                "weights": (
                    "dumbbells|kettlebell|weight plates",
                    "adjustable|hex|neoprene|cast iron|rubber",
                    "set|20 lb|pair|for home gym",
                ),
                "yoga": (
                    "yoga mat|yoga block|resistance bands",
                    "thick|non slip|eco friendly|extra long|cork",
                    "with strap|for beginners|6mm|set",
                ),
                "trackers": (
                    "fitness tracker|smartwatch|heart rate monitor",
                    "waterproof|gps|sleep tracking|slim|solar",
                    "for women|for running|with blood oxygen|for swimming",
                ),
            },
        ),
        "cycling": (
            "Schwinn|Trek|Giant|Bell|Shimano|Cannondale",
            {
                "bikes": (
                    "mountain bike|road bike|electric bike",
                    "folding|hybrid|aluminum|21 speed|full suspension",
                    "for adults|for kids|26 inch|for commuting",
                ),
                "helmets": (
                    "bike helmet|cycling helmet|mips helmet",
                    "lightweight|adjustable|ventilated|youth|urban",
                    "for adults|for kids|with light|with visor",
                ),
                "bike-accessories": (
                    "bike lock|bike lights|bike rack",
                    "heavy duty|usb rechargeable|hitch mounted|combination|led",
                    "for car|for 2 bikes|with cable|set",
                ),
            },
        ),
        "outdoor": (
            "Coleman|The North Face|REI|Osprey|Yeti|CamelBak",
            {
                "camping": (
                    "tent|sleeping bag|camping chair",
                    "waterproof|4 person|ultralight|folding|instant",
                    "for camping|for backpacking|with carry bag|2 pack",
                ),
                "water-bottles": (
                    "water bottle|insulated bottle|hydration pack",
                    "stainless steel|leak proof|32 oz|bpa free|collapsible",
                    "with straw|for kids|for hiking|with handle",
                ),
            },
        ),
    },
    "beauty": {
        "skincare": (
            "CeraVe|Neutrogena|The Ordinary|La Roche-Posay|Olay|Cetaphil",
            {
                "moisturizer": (
                    "moisturizer|face cream|night cream",
                    "hydrating|oil free|anti aging|fragrance free|spf 30",
                    "for dry skin|for oily skin|for sensitive skin|for men",
                ),
                "cleanser": (
                    "face wash|cleanser|micellar water",
                    "foaming|gentle|exfoliating|salicylic acid|hydrating",
                    "for acne|for sensitive skin|for oily skin|for men",
                ),
                "sunscreen": (
                    "sunscreen|sunblock|spf lotion",
                    "mineral|spf 50|water resistant|tinted|reef safe",
                    "for face|for kids|for sensitive skin|spray",
                ),
            },
        ),
        "makeup": (
            "Maybelline|L'Oreal|NYX|Revlon|e.l.f.|Fenty Beauty",
            {
                "lipstick": (
                    "lipstick|lip gloss|lip liner",
                    "matte|long lasting|nude|red|liquid",
                    "set|for women|waterproof|transfer proof",
                ),
                "foundation": (
                    "foundation|concealer|bb cream",
                    "full coverage|matte|dewy|liquid|lightweight",
                    "for oily skin|for dry skin|with spf|for mature skin",
                ),
                "eyes": (
                    "mascara|eyeliner|eyeshadow palette",
                    "waterproof|volumizing|lengthening|smudge proof|neutral",
                    "for sensitive eyes|black|for beginners|set",
                ),
            },
        ),
        "haircare": (
            "Pantene|Dove|Olaplex|Dyson|Conair|Remington",
            {
                "shampoo": (
                    "shampoo|conditioner|hair mask",
                    "sulfate free|moisturizing|volumizing|anti dandruff|color safe",
                    "for curly hair|for thin hair|for dry hair|set",
                ),
                "hair-tools": (
                    "hair dryer|flat iron|curling iron",
                    "ionic|ceramic|cordless|professional|travel",
                    "with diffuser|for thick hair|1 inch|dual voltage",
                ),
            },
        ),
    },
    "toys": {
        "games": (
            "Hasbro|Mattel|Ravensburger|Melissa & Doug|Spin Master|Fisher-Price",
            {
                "board-games": (
                    "board game|card game|strategy game",
                    "family|classic|cooperative|educational|party",
                    "for adults|for kids|for 2 players|for game night",
                ),
                "puzzles": (
                    "jigsaw puzzle|3d puzzle|floor puzzle",
                    "1000 piece|wooden|500 piece|landscape|large piece",
                    "for adults|for kids|for seniors|with frame",
                ),
            },
        ),
        "building": (
            "LEGO|Mega Bloks|K'NEX|Magna-Tiles|Playmobil|VTech",
            {
                "building-sets": (
                    "building set|lego set|building blocks",
                    "creative|technic|classic|magnetic|starter",
                    "for kids 6-12|for boys|for girls|for adults",
                ),
                "stem-toys": (
                    "stem kit|science kit|coding robot",
                    "educational|rechargeable|solar|electronic|beginner",
                    "for kids 8-12|for boys|for girls|for teens",
                ),
            },
        ),
        "dolls-figures": (
            "Barbie|Funko|Hot Wheels|American Girl|Nerf|Marvel",
            {
                "dolls": (
                    "doll|baby doll|dollhouse",
                    "fashion|wooden|soft|interactive|vintage",
                    "for girls|for toddlers|with accessories|set",
                ),
                "action-figures": (
                    "action figure|toy car|foam blaster",
                    "collectible|poseable|remote control|die cast|superhero",
                    "for boys|for kids|set|with launcher",
                ),
            },
        ),
    },
    "books": {
        "fiction": (
            "Penguin|HarperCollins|Vintage|Tor|Bantam|Orbit",
            {
                "mystery": (
                    "mystery novel|thriller book|crime novel",
                    "bestselling|paperback|psychological|cozy|hardcover",
                    "for adults|series|box set|2024",
                ),
                "fantasy": (
                    "fantasy book|fantasy novel|sci fi book",
                    "epic|paperback|young adult|hardcover|illustrated",
                    "series|box set|for teens|trilogy",
                ),
            },
        ),
        "nonfiction": (
            "O'Reilly|Wiley|Random House|DK|Lonely Planet|No Starch Press",
            {
                "cookbooks": (
                    "cookbook|recipe book|baking book",
                    "vegetarian|keto|easy|italian|air fryer",
                    "for beginners|for two|for kids|2024",
                ),
                "programming": (
                    "programming book|coding book|python book",
                    "beginner|advanced|hands on|illustrated|practical",
                    "for beginners|for kids|for data science|3rd edition",
                ),
                "travel-guides": (
                    "travel guide|guidebook|travel book",
                    "illustrated|pocket|budget|updated|complete",
                    "japan|italy|europe|for families",
                ),
            },
        ),
        "children": (
            "Scholastic|Golden Books|Usborne|Random House Kids|Candlewick|Chronicle",
            {
                "picture-books": (
                    "picture book|bedtime story book|board book",
                    "illustrated|interactive|classic|lift the flap|rhyming",
                    "for toddlers|for babies|for preschoolers|set",
                ),
                "early-readers": (
                    "early reader|chapter book|activity book",
                    "beginner|phonics|level 1|illustrated|educational",
                    "for kids 5-7|for first grade|box set|for kindergarten",
                ),
            },
        ),
    },
    "garden": {
        "plants": (
            "Burpee|Miracle-Gro|Ferry-Morse|Costa Farms|Bonnie Plants|Espoma",
            {
                "seeds": (
                    "vegetable seeds|flower seeds|herb seeds",
                    "organic|heirloom|non gmo|wildflower|perennial",
                    "for planting|variety pack|for pollinators|bulk",
                ),
                "soil": (
                    "potting soil|fertilizer|compost",
                    "organic|all purpose|indoor|slow release|cactus",
                    "for vegetables|for houseplants|8 quart|for lawns",
                ),
                "planters": (
                    "planter|flower pot|raised garden bed",
                    "ceramic|self watering|hanging|large|galvanized",
                    "with drainage|for indoor plants|set of 3|for outdoor",
                ),
            },
        ),
        "tools": (
            "Fiskars|Scotts|Gardena|Black+Decker|Greenworks|Flexzilla",
            {
                "hand-tools": (
                    "pruning shears|garden trowel|rake",
                    "heavy duty|ergonomic|stainless steel|bypass|lightweight",
                    "for trees|set|with holster|for women",
                ),
                "watering": (
                    "garden hose|sprinkler|watering can",
                    "expandable|heavy duty|oscillating|50 ft|kink free",
                    "with nozzle|for lawn|for indoor plants|with timer",
                ),
                "mowers": (
                    "lawn mower|string trimmer|leaf blower",
                    "cordless|electric|self propelled|gas|battery powered",
                    "with battery|for small yard|40v|with bag",
                ),
            },
        ),
    },
    "automotive": {
        "car-care": (
            "Meguiar's|Armor All|Chemical Guys|Turtle Wax|Rain-X|Mothers",
            {
                "cleaning": (
                    "car wash soap|car wax|microfiber towels",
                    "ceramic|foaming|spray|professional|waterless",
                    "kit|for black cars|gallon|set",
                ),
                "wipers": (
                    "wiper blades|windshield wipers|rear wiper",
                    "all season|beam|winter|hybrid|silicone",
                    "22 inch|2 pack|for toyota|for honda",
                ),
            },
        ),
        "parts": (
            "Bosch|ACDelco|Mobil 1|Castrol|Michelin|Optima",
            {
                "oil": (
                    "motor oil|synthetic oil|oil filter",
                    "full synthetic|high mileage|5w 30|0w 20|diesel",
                    "5 quart|for toyota|for ford|bulk",
                ),
                "batteries": (
                    "car battery|jump starter|battery charger",
                    "portable|12v|agm|heavy duty|lithium",
                    "for car|for truck|with air compressor|for motorcycle",
                ),
                "tires": (
                    "tires|all season tires|tire inflator",
                    "all terrain|winter|performance|run flat|portable",
                    "225/65r17|for suv|set of 4|for truck",
                ),
            },
        ),
        "interior": (
            "WeatherTech|Husky Liners|Garmin|iOttie|FH Group|Vantrue",
            {
                "floor-mats": (
                    "floor mats|car mats|cargo liner",
                    "all weather|rubber|custom fit|heavy duty|universal",
                    "for suv|for truck|for tesla model 3|set",
                ),
                "car-electronics": (
                    "dash cam|car phone mount|car charger",
                    "4k|magnetic|wireless|dual usb|night vision",
                    "front and rear|for iphone|with gps|for dashboard",
                ),
            },
        ),
    },
    "pets": {
        "dogs": (
            "Purina|Blue Buffalo|KONG|Pedigree|Hill's Science Diet|Chuckit!",
            {
                "dog-food": (
                    "dog food|puppy food|dry dog food",
                    "grain free|high protein|organic|limited ingredient|wet",
                    "for small breeds|for large breeds|30 lb|for sensitive stomach",
                ),
                "dog-toys": (
                    "dog toy|chew toy|tennis balls for dogs",
                    "indestructible|squeaky|interactive|rope|plush",
                    "for aggressive chewers|for puppies|for large dogs|set",
                ),
                "dog-beds": (
                    "dog bed|dog crate|dog kennel",
                    "orthopedic|washable|calming|foldable|heavy duty",
                    "for large dogs|for small dogs|with bolster|xl",
                ),
            },
        ),
        "cats": (
            "Fancy Feast|Friskies|Purina Cat Chow|Tidy Cats|Frisco|Catit",
            {
                "cat-food": (
                    "cat food|kitten food|wet cat food",
                    "grain free|indoor|high protein|hairball control|salmon",
                    "variety pack|24 cans|for senior cats|16 lb",
                ),
                "cat-litter": (
                    "cat litter|litter box|litter mat",
                    "clumping|unscented|self cleaning|covered|odor control",
                    "40 lb|for multiple cats|with lid|lightweight",
                ),
                "cat-toys": (
                    "cat toy|cat tree|scratching post",
                    "interactive|catnip|feather|tall|sisal",
                    "for indoor cats|for kittens|with hammock|set",
                ),
            },
        ),
        "fish": (
            "Tetra|Fluval|API|Marineland|Aqueon|Hikari",
            {
                "aquariums": (
                    "fish tank|aquarium|aquarium kit",
                    "10 gallon|glass|led|starter|nano",
                    "with filter|for betta|with lid|for beginners",
                ),
                "fish-supplies": (
                    "fish food|aquarium filter|water conditioner",
                    "tropical|flake|canister|quiet|freshwater",
                    "for goldfish|for betta|for 20 gallon tank|bulk",
                ),
            },
        ),
    },
    "office": {
        "supplies": (
            "Pilot|BIC|Post-it|Sharpie|Five Star|Moleskine",
            {
                "pens": (
                    "pens|gel pens|ballpoint pens",
                    "black|fine point|retractable|colored|smooth",
                    "12 pack|bulk|for journaling|for school",
                ),
                "notebooks": (
                    "notebook|journal|planner",
                    "spiral|dotted|lined|hardcover|leather",
                    "a5|for school|2025|5 pack",
                ),
                "paper": (
                    "printer paper|sticky notes|index cards",
                    "white|colored|recycled|letter size|super sticky",
                    "500 sheets|24 pack|case|3x3",
                ),
            },
        ),
        "furniture": (
            "Herman Miller|Steelcase|FlexiSpot|SIHOO|HON|Branch",
            {
                "chairs": (
                    "office chair|desk chair|gaming chair",
                    "ergonomic|mesh|high back|reclining|adjustable",
                    "with lumbar support|for back pain|with footrest|for home office",
                ),
                "desks": (
                    "standing desk|computer desk|writing desk",
                    "electric|adjustable|l shaped|small|wooden",
                    "with drawers|for home office|for small spaces|48 inch",
                ),
            },
        ),
        "printing": (
            "HP|Canon|Epson|Brother|Xerox|Lexmark",
            {
                "printers": (
                    "printer|all in one printer|laser printer",
                    "wireless|color|inkjet|compact|duplex",
                    "for home|with scanner|for office|for photos",
                ),
                "ink": (
                    "ink cartridges|toner cartridge|printer ink",
                    "black|color|high yield|compatible|remanufactured",
                    "for hp|for canon|for epson|combo pack",
                ),
            },
        ),
    },
}

AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "apple": ("grocery/produce/fruit", "electronics/phones/smartphones"),
    "blackberry": ("grocery/produce/fruit", "electronics/phones/smartphones"),
    "mouse": ("electronics/computers/mice", "pets/cats/cat-toys"),
    "mac": ("electronics/computers/laptops", "beauty/makeup/lipstick"),
    "charger": ("electronics/phones/chargers", "automotive/parts/batteries"),
    "bed": ("home/bedding/mattresses", "pets/dogs/dog-beds", "garden/plants/planters"),
    "brush": ("beauty/haircare/hair-tools", "automotive/car-care/cleaning"),
    "pump": ("sports/cycling/bike-accessories", "automotive/parts/tires"),
    "tablet": ("electronics/computers/laptops", "office/supplies/notebooks"),
    "monitor": ("electronics/computers/monitors", "sports/fitness/trackers"),
    "ball": ("pets/dogs/dog-toys", "sports/fitness/yoga", "toys/games/board-games"),
    "tire": ("automotive/parts/tires", "sports/cycling/bike-accessories"),
    "lights": ("home/decor/lighting", "sports/cycling/bike-accessories"),
    "watch": ("fashion/accessories/watches", "sports/fitness/trackers"),
    "tank": ("pets/fish/aquariums", "fashion/clothing/t-shirts"),
    "mat": ("sports/fitness/yoga", "automotive/interior/floor-mats", "home/decor/rugs"),
    "pad": ("office/supplies/paper", "electronics/computers/mice"),
    "pen": ("office/supplies/pens", "pets/dogs/dog-beds"),
    "filter": ("pets/fish/fish-supplies", "automotive/parts/oil", "grocery/beverages/coffee"),
    "iron": ("beauty/haircare/hair-tools", "home/kitchen/cookware", "sports/fitness/weights"),
    "shades": ("fashion/accessories/sunglasses", "home/decor/lighting"),
    "cards": ("office/supplies/paper", "toys/games/board-games"),
    "blocks": ("toys/building/building-sets", "sports/fitness/yoga"),
    "bands": ("sports/fitness/yoga", "fashion/accessories/watches"),
    "wax": ("automotive/car-care/cleaning", "home/decor/candles"),
    "nuts": ("grocery/pantry/snacks", "automotive/parts/tires"),
    "kindle": ("electronics/computers/laptops", "books/fiction/mystery"),
    "python": ("books/nonfiction/programming", "toys/building/stem-toys"),
    "chips": ("grocery/pantry/snacks", "electronics/computers/laptops"),
    "crate": ("pets/dogs/dog-beds", "garden/plants/planters"),
}

# Words that keep an ambiguous query ambiguous ("cheap apple", "mouse deals").
NEUTRAL_PREFIXES = ("best", "cheap", "new", "buy", "small", "large", "mini", "used", "discount", "top rated")
NEUTRAL_SUFFIXES = (
    "deals",
    "sale",
    "on sale",
    "near me",
    "reviews",
    "gift",
    "set",
    "2 pack",
    "online",
    "price",
)
GENERIC_PREFIXES = ("best", "cheap", "buy")

LOCALES = (("en-US", 0.70), ("en-GB", 0.14), ("en-CA", 0.10), ("en-AU", 0.06))
COLORS = ("Black", "White", "Blue", "Red", "Gray", "Green", "Navy", "Pink", "Silver", "Beige")
_SMALL_WORDS = frozenset({"for", "with", "in", "of", "and", "a", "to", "on"})


@dataclass(frozen=True)
class Leaf:
    """A third-level category: the unit of ground-truth intent."""

    path: str
    top: str
    brands: tuple[str, ...]
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    modifiers: tuple[str, ...]


def _split(words: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in words.split("|") if w.strip())


def leaves() -> list[Leaf]:
    """Every leaf of :data:`TAXONOMY`, in a stable order."""
    out = []
    for top, subs in TAXONOMY.items():
        for sub, (brands, specs) in subs.items():
            for leaf, (nouns, adjectives, modifiers) in specs.items():
                out.append(
                    Leaf(
                        f"{top}/{sub}/{leaf}",
                        top,
                        _split(brands),
                        _split(nouns),
                        _split(adjectives),
                        _split(modifiers),
                    )
                )
    return out


def title_case(text: str) -> str:
    """``"pre seasoned cast iron skillet with lid"`` -> ``"Pre Seasoned Cast Iron Skillet with Lid"``."""
    words = text.split()
    return " ".join(
        w if (i and w in _SMALL_WORDS) or not w[:1].islower() else w[:1].upper() + w[1:]
        for i, w in enumerate(words)
    )


LEAVES: tuple[Leaf, ...] = tuple(leaves())
